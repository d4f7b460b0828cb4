"""Time and runs to the first counterexample, per planted bug of the zoo (tests/bug_zoo.py) and
per search method, the default portfolio included; and what each finds in the correct ones.

"runs" counts SimPy runs (random), examples (hypothesis), forced-order runs (pct) or
interleavings (exhaustive, one job); a portfolio adds its parts. "-" means nothing was found
within the budget (for a correct strategy, that is the right answer).

    python benchmarks/time_to_bug.py [--budget 1000] [--methods portfolio,random,hypothesis,exhaustive,pct]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bug_zoo import CORRECT, ZOO  # noqa: E402

from sim.search.explore import ExploreError, explore  # noqa: E402


def runs_of(method: str, explored: dict[str, Any]) -> int:
    if method == "portfolio":
        return sum(runs_of(p["method"], p["explored"]) for p in explored["parts"] if "explored" in p)
    if method == "exhaustive":
        return int(explored["ran"])
    return int(explored["runs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000, help="runs per search (default 1000)")
    parser.add_argument("--methods", default="portfolio,random,hypothesis,exhaustive,pct")
    args = parser.parse_args()
    methods = args.methods.split(",")
    print(f"| bug | scenario | needs | {' | '.join(methods)} |")
    print("|---|---|---|" + "---|" * len(methods))
    for bug in (*ZOO, *CORRECT):
        cells = []
        for method in methods:
            scenario = bug.load()
            if method == "exhaustive":
                scenario = scenario.with_values({"job.count": 1})
            started = time.perf_counter()  # wall-clock ok: a benchmark
            try:
                result = explore(scenario, bug.strategy, method, seed=0, runs=args.budget, database=None)
            except ExploreError:
                cells.append("too many orders")
                continue
            seconds = time.perf_counter() - started  # wall-clock ok: a benchmark
            if result.found is None:
                cells.append(f"- ({runs_of(method, result.explored)} runs, {seconds:.1f} s)")
            else:
                how = f" by {result.explored['found_by']}" if method == "portfolio" else ""
                cells.append(f"{seconds:.2f} s, {runs_of(method, result.explored)} runs{how}")
        print(f"| {bug.strategy.name} | {bug.scenario} | {bug.needs} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
