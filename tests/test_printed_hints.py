"""Every command racetrack prints for a user's strategy (``module:attr``) runs as printed, from
another directory: the trace records where the strategy lives, and check's hint says where to
run from."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDLERS = (
    "from dataclasses import replace\n"
    "from tracker.strategies.naive import STRATEGY\n"
    "HANDLERS = replace(STRATEGY, name='my handlers')\n"
)


def _env() -> dict[str, str]:
    # The racetrack under test, and nothing of the user's directory on the path.
    return {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "my_handlers.py").write_text(HANDLERS)
    return project, elsewhere


def test_explore_trace_names_the_strategy_by_module_and_digest_and_its_replay_hint_runs_from_elsewhere(tmp_path) -> None:
    project, elsewhere = _project(tmp_path)
    explored = _shell("racetrack explore seed-fast-jobs --strategy my_handlers:HANDLERS --method random --out t.json", project)
    assert explored.returncode == 1, explored.stderr
    data = json.loads((project / "t.json").read_text())
    assert data["strategy"] == "my_handlers:HANDLERS"
    assert data["strategy_source"]["root"] == str(project.resolve())
    assert len(data["strategy_source"]["sha256"]) == 64
    (hint,) = re.findall(r"^replay: (.*)$", explored.stdout, re.M)
    replayed = _shell(hint, elsewhere)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "REPRODUCED" in replayed.stdout and "exactly" in replayed.stdout
    # Its header is a command too.
    header = replayed.stdout.splitlines()[0]
    assert _shell(header, elsewhere).returncode == 1

    exported = _shell(f"racetrack export {shlex.quote(str(project / 't.json'))} --pytest test_regression.py", elsewhere)
    assert exported.returncode == 0, exported.stderr
    regression = _shell(f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider test_regression.py", elsewhere)
    assert regression.returncode == 1 and "REPRODUCED" in regression.stdout  # red while the race is there


def test_replay_says_when_the_strategy_file_changed_since_the_trace(tmp_path) -> None:
    project, elsewhere = _project(tmp_path)
    assert _shell("racetrack explore seed-fast-jobs --strategy my_handlers:HANDLERS --method random --out t.json", project).returncode == 1
    (project / "my_handlers.py").write_text(HANDLERS + "# edited\n")
    replayed = _shell(f"racetrack replay {shlex.quote(str(project / 't.json'))}", elsewhere)
    assert "changed since the trace was written" in replayed.stdout


def test_check_hint_for_a_user_strategy_runs_as_printed_from_elsewhere(tmp_path) -> None:
    project, elsewhere = _project(tmp_path)
    (project / "gate.toml").write_text('[job]\ncount = 3\n[expect]\n"my_handlers:HANDLERS" = "clean"\n')
    checked = _shell("racetrack check gate.toml --runs 20 --workers 1", project)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    hints = re.findall(r"shortest counterexample \(\d+ ops\): (.*)$", checked.stdout, re.M)
    assert hints
    ran = _shell(hints[0], elsewhere)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the violating seed, violating again
