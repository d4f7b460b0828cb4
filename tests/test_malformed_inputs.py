"""Every user mistake in the corpus (tests/malformed_corpus.py) gives one clear line and exit 2:
no traceback, never exit 1 (which means "an invariant was violated"), no hang."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import sys
from pathlib import Path

import malformed_corpus as corpus
import pytest

from sim.cli import main

HANG_SECONDS = 120  # far beyond any case's honest answer (the slowest is a refused connection)


def _good_trace(tmp: Path) -> dict:
    path = tmp / "good.json"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["explore", "seed-fast-jobs", "--method", "random", "--budget", "50", "--out", str(path)])
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def good_trace(tmp_path_factory) -> dict:
    return _good_trace(tmp_path_factory.mktemp("trace"))


def _all_cases() -> list[tuple[str, list[str], dict]]:
    return [*corpus.cli_cases(), *corpus.scenario_cases(), *corpus.results_cases(), *corpus.strategy_cases(), *corpus.dsn_cases(), *corpus.table_sql_cases(),
            *corpus.lifecycle_cases()]


def run_case(argv: list[str], files: dict, tmp_path: Path) -> tuple[int, str, str]:
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for name in ("badstrat", "mystrat", "brokenmod", "syntaxmod"):
        sys.modules.pop(name, None)  # each case imports its own version of the user's module
    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    # A hang ends the whole test process with every thread's stack (racetrack's own limits use
    # the timer signal, so the corpus cannot).
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([a.replace("{dir}", str(tmp_path)) for a in argv])
    except SystemExit as exc:  # argparse or a library calling sys.exit
        code = exc.code if isinstance(exc.code, int) else -3
    except BaseException as exc:  # a traceback the user would have seen
        code = -2
        err.write(f"TRACEBACK: {type(exc).__name__}: {exc}\n")
    finally:
        faulthandler.cancel_dump_traceback_later()
        os.chdir(old_cwd)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
    return code, out.getvalue(), err.getvalue()


def assert_one_clear_line(code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {err[-2000:]}"
    assert lines[0].startswith("racetrack"), lines[0]
    assert "Traceback" not in err
    assert "secret" not in err  # a password in a DSN is never printed


@pytest.mark.parametrize(("argv", "files"), [pytest.param(a, f, id=n) for n, a, f in _all_cases()])
def test_a_user_mistake_is_one_line_and_exit_2(argv, files, tmp_path):
    code, _, err = run_case(argv, files, tmp_path)
    assert_one_clear_line(code, err)


def test_a_hand_edited_trace_is_one_line_and_exit_2(good_trace, tmp_path):
    failures = []
    cases = corpus.trace_cases(good_trace)
    for i, (name, argv, files) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        code, _, err = run_case(argv, files, folder)
        try:
            assert_one_clear_line(code, err)
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0]}")
    assert not failures, f"{len(failures)} of {len(cases)} trace mistakes:\n" + "\n".join(failures)


#: Commands and inputs added after the corpus was first written: each must have its own cases.
NEWER_INPUTS = ("cli/live-", "cli/calibrate-", "cli/clean-", "table-sql/", "cli/table-sql-", "cli/check-search-",
                "cli/explore-worlds-", "scenario/host-", "scenario/clock-host-", "scenario/network-", "scenario/class-",
                "scenario/listeners-", "scenario/expect-search-")


def test_the_corpus_is_large_enough(good_trace):
    names = [name for name, _, _ in _all_cases()] + [name for name, _, _ in corpus.trace_cases(good_trace)]
    assert len(names) >= 200, len(names)
    assert len(set(names)) == len(names), "two cases share a name"
    thin = [kind for kind in NEWER_INPUTS if sum(n.startswith(kind) for n in names) < 3]
    assert not thin, f"fewer than 3 cases for: {thin}"
