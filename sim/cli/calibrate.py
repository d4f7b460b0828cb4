"""``racetrack calibrate``: a scenario run live and simulated with matched parameters, per
invariant the two violation rates with 95% Wilson intervals, and what the live world measured;
``--fit`` writes a scenario with the measured distributions (docs/live.md).

Exit 0 when every invariant's rates are consistent, 1 when one is not, 2 for bad input, an
unusable Redis or PostgreSQL, or runs the strategy's handlers kept from being judged (left out of
the comparison; refused when a side has none judged), 130 when interrupted before any live run
finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sim.cli.args import MAX_RUNS, UsageError, output_file, positive, positive_float, seed
from sim.cli.live import add_server_flags, load_inputs, run_live_batch
from tracker.errors import UserError


def _pct(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:5.1f}, {100 * ci[1]:5.1f}]"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from sim.live import calibrate as cal

    scenario, strategy = load_inputs(args.scenario, args.strategy)
    if args.fit and not args.fit.endswith(".toml"):
        raise UsageError(f"--fit {args.fit}: the fitted scenario is written as TOML; name it OUT.toml")
    if args.out and not args.out.endswith(".json"):
        raise UsageError(f"--out {args.out}: the calibration is written as JSON (what --json prints); name it OUT.json")
    if args.sim_runs is not None and args.sim_runs < args.runs:  # before any live run: they would be compared with nothing
        raise UsageError(f"--sim-runs {args.sim_runs} is fewer than --runs {args.runs}: each live seed is compared with "
                         "the simulated run of the same seed; give --sim-runs >= --runs")
    batch = run_live_batch(scenario, strategy, args, args.runs)
    if not batch.runs:
        print(f"racetrack: {batch.error or 'interrupted before a live run finished'}", file=sys.stderr)
        return 130 if batch.interrupted else 2
    # A run whose strategy crashed or reached a limit was not judged: its zero violations mean
    # nothing, so it is left out of both sides' rates (docs/live.md), and a side with no judged
    # run at all cannot be compared.
    live, live_unjudged = cal.judged_live(batch.runs)
    if not live:
        if batch.interrupted:
            print("racetrack: interrupted before a judged live run finished", file=sys.stderr)
            return 130
        raise UserError(cal.nothing_judged("live", len(live_unjudged), live_unjudged[0]))
    matched = cal.matched_scenario(scenario, live)
    sim_runs = args.sim_runs or max(200, len(batch.runs))
    sim, sim_unjudged = cal.judged_sim(cal.simulate(matched, strategy, sim_runs, args.seed))
    if not sim:
        raise UserError(cal.nothing_judged("simulated", len(sim_unjudged), sim_unjudged[0]))
    comparisons = cal.compare(sim, live)
    consistent = all(c.consistent for c in comparisons)
    measured = cal.measurements(live)
    if args.fit:
        fitted = cal.fit_scenario(scenario, live)
        text = cal.scenario_toml(
            fitted, f"{scenario.name} fitted to {len(live)} live run(s) of {strategy.name}: measured round trips, durations, gaps"
        )
        try:
            Path(args.fit).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"racetrack: --fit {args.fit}: cannot write ({exc.strerror})", file=sys.stderr)
            return 2
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "strategy": strategy.name,
        "runs": {"sim": len(sim), "live": len(live)},
        "invariants": [c.as_json() for c in comparisons],
        "consistent": consistent,
        "paired": {c.invariant: f"{c.paired_agree}/{c.live_n}" for c in comparisons},
        "measured": measured,
        "matched": {"network.db_rtt": matched.dist("network.db_rtt").to_toml()},
    }
    unjudged = cal.unjudged_note(live_unjudged, sim_unjudged)
    if unjudged:
        out["unjudged"] = {"live": len(live_unjudged), "sim": len(sim_unjudged), "error": (live_unjudged + sim_unjudged)[0]}
    if args.out:  # the same object as --json, kept for 'racetrack report'
        try:
            Path(args.out).write_text(json.dumps(out) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"racetrack: --out {args.out}: cannot write ({exc.strerror})", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(out))
    else:
        print(f"racetrack calibrate {scenario.name} --strategy {strategy.name}: {len(live)} live run(s), {len(sim)} simulated")
        print(f"simulated with network.db_rtt = {matched.dist('network.db_rtt').to_toml()} (the live round trips)")
        head = (
            f"{'invariant':<22} {'sim rate':>8} {'sim 95% CI':>16} {'live rate':>9} {'live 95% CI':>16}  "
            f"{'same seed agrees':>16}  consistent"
        )
        print(head)
        print("-" * len(head))
        for c in comparisons:
            print(
                f"{c.invariant:<22} {c.sim_k / c.sim_n:>8.3f} {_pct(c.sim_ci):>16} {c.live_k / c.live_n:>9.3f} "
                f"{_pct(c.live_ci):>16}  {f'{c.paired_agree}/{c.live_n}':>16}  {'yes' if c.consistent else 'NO'}"
            )
        print()
        print("measured live (ms): " + json.dumps(measured))
        if args.fit:
            print(f"wrote {args.fit}")
    if batch.interrupted:
        print(f"racetrack: interrupted; compared the {len(live)} finished live run(s)", file=sys.stderr)
    if batch.error:
        print(f"racetrack: {batch.error} (compared the {len(live)} finished live run(s))", file=sys.stderr)
    if unjudged:
        print(f"racetrack: {unjudged}", file=sys.stderr)
        return 2
    return 0 if consistent else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="run a scenario live and simulated; compare violation rates (exit 1 if inconsistent)")
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--runs", type=positive("--runs", MAX_RUNS), default=10, help="live runs (default: 10)")
    p.add_argument("--sim-runs", type=positive("--sim-runs", MAX_RUNS), help="simulated runs (default: max(200, live runs))")
    p.add_argument("--seed", type=seed, default=0, help="first seed of both sides (default: 0)")
    p.add_argument("--time", type=positive_float("--time"), metavar="SECONDS", help="start no new live run after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fit", type=output_file("--fit"), metavar="OUT.toml", help="write a scenario file with the measured distributions")
    p.add_argument("--out", type=output_file("--out"), metavar="OUT.json",
                   help="also write the --json object to OUT.json, which 'racetrack report' shows as a calibration table")
    add_server_flags(p)
    p.set_defaults(func=cmd_calibrate)
