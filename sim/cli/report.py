"""``racetrack report``: turn results files (sweeps' and live runs'), traces and calibrations into
an HTML/Markdown report with tables and plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sim.cli.args import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="turn results files and traces into an HTML/Markdown report with tables and plots")
    p.add_argument("inputs", nargs="+", metavar="RESULTS", help="results files (.parquet, .csv), trace files and calibrations (.json)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="directory for index.html, report.md, PNGs, summary.csv")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from reports.compose import write_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    report = write_report([Path(p) for p in args.inputs], out)
    runs = len(report.summary) and int(report.summary["runs"].sum())
    calibrations = f"; {report.calibrations} calibration(s)" if report.calibrations else ""
    print(f"report: {out / 'index.html'} ({runs} runs, {report.violations} violating; {len(report.images)} figures"
          f"{calibrations}; also report.md{', summary.csv' if runs else ''})")
    return 0
