"""The pytest plugin, used the way a user would: the README's example, in a directory outside
the repository, run by pytest in a subprocess."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from sim.pytest_plugin import profile_name

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## CI gate, pytest plugin, and sweeps at scale"


def _example_files() -> dict[str, str]:
    """The README section's ```python blocks that start with a ``# path.py`` line."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# (\S+\.py)", first.strip())
        if match:
            files[match.group(1)] = rest
    return files


def _pytest(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RACETRACK_PROFILE", "PYTEST_ADDOPTS")}
    env["RACETRACK_PROFILE"] = "dev"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=where, env=env, capture_output=True, text=True, timeout=300,
    )


def test_readme_example_passes_for_good_handlers_outside_the_repo(tmp_path):
    files = _example_files()
    assert set(files) == {"my_pkg/handlers.py", "test_status_handlers.py"}
    assert not str(tmp_path).startswith(str(README.parent))
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "racetrack: profile racetrack-dev" in _pytest(tmp_path, "--co", "-v").stdout  # -v undoes -q: header shown


def test_naive_handlers_fail_readably_with_the_shortest_counterexample(tmp_path):
    (tmp_path / "test_gate.py").write_text(
        "def test_naive_holds(racetrack):\n"
        "    racetrack.assert_holds('naive', scenario='seed-fast-jobs', runs=30)\n"
    )
    done = _pytest(tmp_path)
    out = done.stdout
    assert done.returncode == 1
    assert "racetrack: strategy naive broke" in out
    assert "no-rejected-writes: violated in 30/30 runs" in out
    assert "shortest counterexample: seed" in out and "<-- no-rejected-writes" in out
    assert "Traceback" not in out and "def test_naive_holds" not in out  # no pytest code dump
    replay = re.search(r"replay: (racetrack run .*)", out)
    assert replay is not None
    argv = shlex.split(replay.group(1))[1:]
    rerun = subprocess.run([sys.executable, "-c", "from sim.cli import entry; entry()", *argv], cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 1 and "no-rejected-writes" in rerun.stdout


def test_profile_follows_ci_unless_racetrack_profile_says_otherwise():
    assert profile_name({}) == "racetrack-dev"
    assert profile_name({"CI": "true"}) == "racetrack-ci"
    assert profile_name({"CI": "true", "RACETRACK_PROFILE": "dev"}) == "racetrack-dev"
    assert profile_name({"RACETRACK_PROFILE": "racetrack-ci"}) == "racetrack-ci"


def test_installing_the_plugin_does_not_change_other_hypothesis_tests(tmp_path):
    (tmp_path / "test_other.py").write_text(
        "from hypothesis import settings\n"
        "def test_defaults_untouched():\n"
        "    assert settings().max_examples == settings.get_profile('default').max_examples\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RACETRACK_PROFILE", "CI")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
