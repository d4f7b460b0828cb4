"""``racetrack report``: turn results files (sweeps' and live runs'), traces and calibrations into
an HTML/Markdown report with tables and plots."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Any

from sim.cli.args import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="turn results files and traces into an HTML/Markdown report with tables and plots")
    p.add_argument("inputs", nargs="+", metavar="RESULTS", help="results files (.parquet, .csv), trace files and calibrations (.json)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="directory for index.html, report.md, PNGs, summary.csv")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from reports.compose import overwritten_input, write_report
    from reports.inputs import read_inputs

    if not args.out:  # Path("") is ".": the report would land wherever the command ran
        raise UsageError("-o '': empty; give the directory to write the report into")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    paths = [Path(p) for p in args.inputs]
    clash = overwritten_input(paths, out)  # before anything is read or written
    if clash is not None:
        raise UsageError(f"-o {out}: the report would overwrite its input {clash[0]} (it writes {clash[1].name} "
                         "there); give another directory")
    inputs = read_inputs(paths)  # a bad input is said before anything is created
    _make_directory(out)
    try:
        report = write_report(paths, out, inputs)
    except OSError as exc:
        if not _inside(exc.filename, out):
            raise  # not the output's fault: a bug, with its traceback in the log
        raise UsageError(f"-o {out}: cannot write {Path(exc.filename).name} there ({exc.strerror or exc})") from None
    if report.unshown:  # a warning, not an error: the report is written and right without them
        print(f"racetrack: warning: {len(report.unshown)} trace(s) not shown in the report: {'; '.join(report.unshown)}",
              file=sys.stderr)
    runs = len(report.summary) and int(report.summary["runs"].sum())
    calibrations = f"; {report.calibrations} calibration(s)" if report.calibrations else ""
    print(f"report: {out / 'index.html'} ({runs} runs, {report.violations} violating; {len(report.images)} figures"
          f"{calibrations}; also report.md{', summary.csv' if runs else ''})")
    return 0


def _make_directory(out: Path) -> None:
    """Create ``out`` (and its parents), or say in one line why it cannot be: the place is under a
    file, or the system refuses (a read-only or virtual file system, no permission)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        above = next((p for p in out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise UsageError(f"-o {out}: cannot create the directory ({above} is a file, not a directory)") from None
        why = exc.strerror or str(exc)
        if exc.errno == errno.ENOENT and above is not None:  # /proc, /sys: the place exists and refuses
            why = f"{above} takes no new directory: {why}"
        raise UsageError(f"-o {out}: cannot create the directory ({why})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"-o {out}: the directory is not writable")


def _inside(filename: object, out: Path) -> bool:
    """Whether an OSError's file is ``out`` or in it (a file of the report being written)."""
    if not isinstance(filename, str | os.PathLike):
        return False
    try:
        return Path(filename).resolve().is_relative_to(out.resolve())
    except (OSError, ValueError):
        return False
