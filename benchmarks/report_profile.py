"""Where a report's time goes: builds the report over a results file with every figure drawn in
this process (no worker pool, so the profile sees them all) under cProfile, and prints the total
time, the function-call count (steadier than time on a loaded machine) and the costliest calls
by cumulative time.

    python benchmarks/report_profile.py /tmp/r6500.parquet [--top 40]
    python benchmarks/report_profile.py /tmp/r6500.parquet --phases

``--phases`` profiles nothing: it writes the report as ``racetrack report`` does (figures in the
worker pool) and prints when each phase ended, in seconds from the start: importing the report's
modules (pandas, matplotlib), reading the file, the first and the last figure handed to the
pool, every figure drawn, the report written.

May import: reports. Prints figures; asserts nothing. The output folder is temporary and removed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # wall-clock ok: a benchmark times phases


def phase(what: str) -> None:
    print(f"{time.perf_counter() - STARTED:6.2f} s  {what}", flush=True)  # wall-clock ok


def phases(results: Path) -> None:
    """Write the report over ``results`` as the command does, printing when each phase ended."""
    from reports import compose, drawing

    phase("imported the report's modules (pandas, matplotlib)")
    inputs = compose.read_inputs([results])
    phase("read the results file")
    draw, wait = drawing.Figures.draw, drawing.Figures.wait
    handed: list[str] = []

    def timed_draw(self: drawing.Figures, *args: Any, path: Path) -> str:
        if not handed:
            phase("handed the first figure to the pool")
        handed.append(path.name)
        return draw(self, *args, path=path)

    def timed_wait(self: drawing.Figures) -> None:
        phase(f"handed the last of {len(handed)} figures to the pool")
        wait(self)
        phase("every figure drawn")

    drawing.Figures.draw, drawing.Figures.wait = timed_draw, timed_wait  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="racetrack-report-profile-") as out:
            compose.write_report([results], Path(out), inputs)
            phase("report written")
    finally:
        drawing.Figures.draw, drawing.Figures.wait = draw, wait  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results file (racetrack sweep --out)")
    parser.add_argument("--top", type=int, default=40, help="how many calls to print (default: 40)")
    parser.add_argument("--phases", action="store_true", help="time the phases of the real command instead of profiling")
    args = parser.parse_args()
    if not args.results.is_file():
        parser.error(f"{args.results}: no such file")
    if args.phases:
        phases(args.results)
        return
    from reports.compose import build
    from reports.drawing import Figures
    from reports.inputs import read_inputs

    inputs = read_inputs([args.results])
    with tempfile.TemporaryDirectory(prefix="racetrack-report-profile-") as out:
        profile = cProfile.Profile()
        profile.runcall(build, inputs, Path(out), Figures(workers=1))
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
