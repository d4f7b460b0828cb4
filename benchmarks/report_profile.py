"""Where a report's time goes: builds the report over a results file with every figure drawn in
this process (no worker pool, so the profile sees them all) under cProfile, and prints the total
time, the function-call count (steadier than time on a loaded machine) and the costliest calls
by cumulative time.

    python benchmarks/report_profile.py /tmp/r6500.parquet [--top 40]

May import: reports. Prints figures; asserts nothing. The output folder is temporary and removed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from reports.compose import build
from reports.drawing import Figures
from reports.inputs import read_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results file (racetrack sweep --out)")
    parser.add_argument("--top", type=int, default=40, help="how many calls to print (default: 40)")
    args = parser.parse_args()
    inputs = read_inputs([args.results])
    with tempfile.TemporaryDirectory(prefix="racetrack-report-profile-") as out:
        profile = cProfile.Profile()
        profile.runcall(build, inputs, Path(out), Figures(workers=1))
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
