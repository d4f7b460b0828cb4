"""The pytest plugin, used the way a user would: docs/pytest-plugin.md's example, in a directory
outside the repository, run by pytest in a subprocess; the profile chosen each documented way."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sim.pytest_plugin import profile_name

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "pytest-plugin.md"


def _example_files() -> dict[str, str]:
    """The page's ```python blocks that start with a ``# path.py`` line."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S):
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# (\S+\.py)", first.strip())
        if match:
            files[match.group(1)] = rest
    return files


def _pytest(where: Path, *args: str, profile: str | None = "dev") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RACETRACK_PROFILE", "PYTEST_ADDOPTS")}
    if profile is not None:
        env["RACETRACK_PROFILE"] = profile
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=where, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_documented_example_passes_for_good_handlers_outside_the_repo(tmp_path):
    files = _example_files()
    assert set(files) == {"my_pkg/handlers.py", "test_status_handlers.py"}
    assert not str(tmp_path).startswith(str(ROOT))
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "racetrack: profile racetrack-dev" in _pytest(tmp_path, "--co", "-v").stdout  # -v undoes -q: header shown


@pytest.mark.slow
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


def test_profile_option_beats_environment_beats_ini_beats_ci():
    assert profile_name({"CI": "true"}, ini="dev") == "racetrack-dev"
    assert profile_name({"RACETRACK_PROFILE": "ci"}, ini="dev") == "racetrack-ci"
    assert profile_name({"RACETRACK_PROFILE": "ci"}, option="dev", ini="ci") == "racetrack-dev"
    assert profile_name({}, option=" ", ini="") == "racetrack-dev"  # blank is not a choice


def _header_and_examples(where: Path, *args: str, profile: str | None = None) -> tuple[str, str]:
    """The header's profile line, and the max_examples a Hypothesis test sees, under ``args``."""
    (where / "test_profile.py").write_text(
        "from hypothesis import settings\n"
        "def test_show():\n"
        "    print('max_examples', settings().max_examples)\n"
    )
    done = _pytest(where, "-s", "-v", *args, profile=profile)
    assert done.returncode == 0, done.stdout + done.stderr
    header = re.search(r"racetrack: profile \S+", done.stdout)
    examples = re.search(r"max_examples \d+", done.stdout)
    assert header and examples, done.stdout
    return header.group(0), examples.group(0)


@pytest.mark.slow
@pytest.mark.parametrize("way", ["option", "ini", "environment"])
def test_each_documented_way_chooses_the_ci_profile(tmp_path, way):
    if way == "option":
        seen = _header_and_examples(tmp_path, "--racetrack-profile", "ci")
    elif way == "ini":
        (tmp_path / "pytest.ini").write_text("[pytest]\nracetrack_profile = ci\n")
        seen = _header_and_examples(tmp_path)
    else:
        seen = _header_and_examples(tmp_path, profile="ci")
    # the header says so, and the Hypothesis profile is loaded because the choice was explicit
    assert seen == ("racetrack: profile racetrack-ci", "max_examples 500")


def test_without_a_choice_the_hypothesis_settings_are_untouched(tmp_path):
    assert _header_and_examples(tmp_path) == ("racetrack: profile racetrack-dev", "max_examples 100")


def test_a_bad_profile_stops_pytest_in_one_line_naming_where_it_came_from(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nracetrack_profile = nightly\n")
    done = _pytest(tmp_path, profile=None)
    assert done.returncode != 0
    assert "racetrack_profile (ini)='nightly': use dev or ci" in done.stdout + done.stderr


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


def test_a_count_that_judges_nothing_fails_the_test_instead_of_passing(tmp_path):
    # runs=0 or fewer would judge no run, so the assertion could never fail: it is refused
    (tmp_path / "test_counts.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('kw', [dict(runs=0), dict(runs=-3), dict(runs=2.5), dict(seed=-1),"
        " dict(runs=2, seed=2**63 - 1), dict(workers=0), dict(runs=10**8), dict(workers=10**4),"
        " dict(invariants='no-rejected-writes')])\n"
        "def test_refused(racetrack, kw):\n"
        "    racetrack.assert_holds('atomic', scenario='process-success', **kw)\n"
        "def test_violates_refused(racetrack):\n"
        "    racetrack.assert_violates('naive', 'no-rejected-writes', runs=0)\n"
    )
    done = _pytest(tmp_path, "-rf")
    assert done.returncode == 1
    assert "10 failed" in done.stdout
    for said in ("runs=0: give a whole number from 1 to 10,000,000", "runs=-3: give", "runs=2.5: give",
                 "runs=100000000: give", "seed=-1: give a whole number from 0", f"seed={2**63 - 1}: give a whole number from 0 to {2**63 - 2}",
                 "workers=0: give a whole number from 1 to", "workers=10000: give",
                 "invariants='no-rejected-writes': give a list of invariant IDs"):
        assert said in done.stdout, said
    assert "Traceback" not in done.stdout


def test_a_strategy_whose_runs_crash_fails_the_test_never_holds(tmp_path):
    # a run that could not finish judged nothing: assert_holds must not pass on it
    (tmp_path / "crashing.py").write_text(
        "from tracker.ops import Select\nfrom tracker.strategies import Strategy\n"
        "def on_active(job, ctx):\n    yield Select(job.id)\n    raise RuntimeError('boom')\n"
        "CRASH = Strategy(name='crash', summary='x', on_active=on_active)\n")
    (tmp_path / "test_crash.py").write_text(
        "def test_holds(racetrack):\n    racetrack.assert_holds('crashing:CRASH', scenario='seed-fast-jobs', runs=5)\n"
        "def test_violates(racetrack):\n    racetrack.assert_violates('crashing:CRASH', 'no-rejected-writes', runs=5)\n")
    done = _pytest(tmp_path, "-rf")
    assert done.returncode == 1 and "2 failed" in done.stdout, done.stdout
    assert done.stdout.count("runs could not be judged; first: seed 0: strategy crash") == 2
