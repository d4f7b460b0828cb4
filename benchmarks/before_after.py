"""In-memory runs per second of two source trees (say main and a branch), measured alternately in
one invocation, and their ratio: on a shared machine a ratio of rates taken minutes apart says
more about the neighbours than about the code.

    git archive main | tar -x -C /tmp/before
    python benchmarks/before_after.py /tmp/before . [--runs 200] [--rounds 3] [--scenario S] [--strategy S]

Each round runs ``--runs`` runs (simulate, judge, result row, seeds 0..runs-1) in a fresh
interpreter per tree, before then after; the best rate of each tree over the rounds is reported
(the round least disturbed by other processes), and the least CPU time per run of each tree
(waiting for a core does not inflate it). Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

RUNS = r"""
import sys, time
from sim.engine import scenario as scenarios
from sim.runs.runner import run_one
from tracker.strategies import load_strategy

scenario, strategy, runs = scenarios.load(sys.argv[1]), load_strategy(sys.argv[2]), int(sys.argv[3])
for seed in range(5):  # warm-up: first-use imports and caches
    run_one(scenario, strategy, seed).row()
wall, cpu = time.perf_counter(), time.process_time()  # wall-clock ok: a benchmark
for seed in range(runs):
    run_one(scenario, strategy, seed).row()
print(runs / (time.perf_counter() - wall), time.process_time() - cpu)  # wall-clock ok
print(sys.modules["sim"].__file__)
"""


def rate(tree: Path, scenario: str, strategy: str, runs: int) -> tuple[float, float]:
    """(runs per second, CPU seconds) of ``runs`` runs with ``tree`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    done = subprocess.run(  # run in the tree: ``python -c`` puts the working directory first on the path
        [sys.executable, "-c", RUNS, scenario, strategy, str(runs)], env=env, cwd=tree.resolve(),
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark: {tree}: {done.stderr.strip().splitlines()[-1:]}")
    figures, imported = done.stdout.splitlines()
    if not Path(imported).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"benchmark: {tree}: imported sim from {imported}, not from the tree")
    per_second, cpu = figures.split()
    return float(per_second), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", default="seed-fast-jobs")
    parser.add_argument("--strategy", default="naive")
    args = parser.parse_args()
    best = {"before": 0.0, "after": 0.0}
    least_cpu = {"before": float("inf"), "after": float("inf")}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            per_second, cpu = rate(getattr(args, name), args.scenario, args.strategy, args.runs)
            best[name], least_cpu[name] = max(best[name], per_second), min(least_cpu[name], cpu)
    load = os.getloadavg()[0]
    print(f"scenario {args.scenario}, strategy {args.strategy}: {args.runs} runs x {args.rounds} rounds, "
          f"best round of each (load average {load:.1f})")
    for name in ("before", "after"):
        print(f"{name:<7} {str(getattr(args, name)):<30} {best[name]:8.1f} runs/s  "
              f"{least_cpu[name] / args.runs * 1000:6.2f} ms CPU per run")
    print(f"runs/s after / before: {best['after'] / best['before']:.2f}   "
          f"CPU per run before / after: {least_cpu['before'] / least_cpu['after']:.2f}")


if __name__ == "__main__":
    main()
