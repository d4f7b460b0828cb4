"""Seconds to a counterexample in seed-fast-jobs, per built-in strategy and search method.

For each strategy and method: the median wall-clock seconds of ``explore`` over a few search
seeds (search plus shrinking, in memory), the runs it took to the first violation, and the
operations in the shrunk counterexample; or "none" with the work done within the budget.
The seed's own integration suite needed a 31.971 s run to hit the race one to four times.

    python benchmarks/time_to_counterexample.py [--budget 300] [--seeds 3] [--strategies naive,atomic]
"""

from __future__ import annotations

import argparse
import statistics
import time

from sim.engine import scenario as scenarios
from sim.search.explore import ExploreError, explore
from tracker.strategies import BUILTIN, load_strategy

SEED_SUITE_SECONDS = 31.971  # seed/T044.14-completion-report.md: "(10 tests) 31971ms"


def work(method: str, explored: dict) -> str:
    if method == "exhaustive":
        return f"{explored['ran']}/{explored['interleavings']} interleavings"
    if method == "pct":
        depths = ", ".join(f"d{d} {p:.3g}" for d, p in explored["bound_every_world"].items())
        return f"{explored['runs']} runs, bound {depths}"
    if method == "hypothesis":
        return f"{explored['runs']} examples" + (f" ({explored['runs_to_first']} to first)" if explored.get("runs_to_first") else "")
    return f"{explored['runs']} runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300, help="runs / examples per search (default 300)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds 0..N-1, median reported (default 3)")
    parser.add_argument("--strategies", default=",".join(BUILTIN))
    args = parser.parse_args()
    base = scenarios.load("seed-fast-jobs")
    print(f"seed-fast-jobs, memory backend, budget {args.budget}, median of {args.seeds} search seeds")
    print(f"{'strategy':<12} {'method':<11} {'found':>6} {'median s':>9} {'max s':>7} {'ops':>5}  work (seed 0)")
    for name in args.strategies.split(","):
        strategy = load_strategy(name)
        for method in ("random", "hypothesis", "exhaustive", "pct"):
            scenario = base.with_values({"job.count": 1}) if method == "exhaustive" else base
            times, ops, found, first = [], [], 0, None
            for seed in range(args.seeds):
                started = time.perf_counter()
                try:
                    result = explore(scenario, strategy, method, seed=seed, runs=args.budget if method != "exhaustive" else 10_000)
                except ExploreError as exc:
                    first = first or {"error": str(exc)}
                    continue
                times.append(time.perf_counter() - started)
                first = first or result.explored
                if result.found is not None:
                    found += 1
                    ops.append(result.found.ops)
            text = "error: " + first["error"] if first and "error" in first else work(method, first or {})
            print(
                f"{name:<12} {method:<11} {found:>3}/{args.seeds:<2} {statistics.median(times) if times else float('nan'):>9.3f} "
                f"{max(times) if times else float('nan'):>7.3f} {min(ops) if ops else '-':>5}  {text}"
            )
    print(f"\nfor comparison: the seed's integration suite ran {SEED_SUITE_SECONDS} s to hit the race 1-4 times")


if __name__ == "__main__":
    main()
