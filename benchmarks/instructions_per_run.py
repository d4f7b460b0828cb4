"""CPU instructions per in-memory run, counted by callgrind: a figure that does not depend on how
busy the machine is (wall-clock rates on a shared machine do).

    python benchmarks/instructions_per_run.py [--scenario NAME] [--strategy S] [--runs N]

Runs ``valgrind --tool=callgrind`` twice on the same script: once with a few warm-up runs only,
once with ``--runs`` more; the difference divided by ``--runs`` is the cost of one run (simulate,
judge, result row), with interpreter start-up, imports and scenario loading subtracted. The same
for ``sim_throughput.py``'s bare SimPy skeleton (the same SimPy events per run), and the ratio. Seeds are
fixed, so the count is the same on every machine with the same Python and libraries (give or take
a fraction of a percent). Needs ``valgrind`` on PATH. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from callgrind import under_callgrind  # benchmarks/callgrind.py, beside this script

WARMUP = 5

RUNS = r"""
import sys
from sim.engine import scenario as scenarios
from sim.runs.runner import run_one
from tracker.strategies import load_strategy

scenario, strategy, runs, what = scenarios.load(sys.argv[1]), load_strategy(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if what == "racetrack":
    for seed in range(runs):
        run_one(scenario, strategy, seed).row()
else:  # the bare SimPy skeleton of sim_throughput.py, with the same events per run
    sys.path.insert(0, sys.argv[5])
    from sim_throughput import count_events, skeleton_run
    samples = [count_events(scenario, strategy, seed) for seed in range(20)]
    events = round(sum(e for e, _ in samples) / len(samples))
    processes = round(sum(p for _, p in samples) / len(samples))
    for _ in range(runs):
        skeleton_run(events, processes)
"""


def instructions(scenario: str, strategy: str, runs: int, what: str) -> int:
    """Instructions callgrind counted for a process that does ``runs`` runs of ``what``."""
    counted, done = under_callgrind(
        "valgrind", [sys.executable, "-c", RUNS, scenario, strategy, str(runs), what, str(Path(__file__).parent)]
    )
    if counted is None:
        raise SystemExit(f"benchmark: callgrind failed: {done.stderr.strip().splitlines()[-1:]}")
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="seed-fast-jobs")
    parser.add_argument("--strategy", default="naive")
    parser.add_argument("--runs", type=int, default=50, help="runs counted beyond the warm-up (default 50)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("benchmark: valgrind not found (apt-get install valgrind)")
    per_run = {}
    for what in ("racetrack", "skeleton"):
        base = instructions(args.scenario, args.strategy, WARMUP, what)
        total = instructions(args.scenario, args.strategy, WARMUP + args.runs, what)
        per_run[what] = (total - base) / args.runs
    print(f"scenario {args.scenario}, strategy {args.strategy} ({args.runs} runs counted, start-up and"
          f" {WARMUP} warm-up runs subtracted)")
    print(f"racetrack (simulate + judge + result row): {per_run['racetrack'] / 1e6:8.3f} M instructions per run")
    print(f"bare SimPy skeleton, same events:          {per_run['skeleton'] / 1e6:8.3f} M instructions per run")
    print(f"ratio skeleton / racetrack:                {per_run['skeleton'] / per_run['racetrack']:8.3f}"
          "  (as sim_throughput.py's runs/s ratio, without the machine's load)")


if __name__ == "__main__":
    main()
