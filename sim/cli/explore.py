"""``racetrack explore``: search one scenario and strategy for a counterexample (random seeds,
Hypothesis, every interleaving, or PCT), shrink it, and write it as a replayable trace (exit 1
when one is found)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from sim.cli.args import (
    UsageError,
    add_limit_flags,
    add_scenario_argument,
    limits_applied,
    load_strategy_arg,
    output_file,
    positive,
    positive_float,
    seed,
)
from sim.cli.output import refuse_overwriting, scenario_inputs

DEFAULT_TRACE = "racetrack-counterexample.json"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("explore", help="search for a counterexample, shrink it, write it as a trace (exit 1 when found)")
    add_scenario_argument(p)
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--method", choices=("portfolio", "random", "hypothesis", "exhaustive", "pct"), default="portfolio",
                   help="how to search (default: portfolio: random, exhaustive on one job, pct, then hypothesis, "
                        "each with a share of the budget)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=positive("--budget", 100_000_000),
                        help="runs (portfolio: shared by its methods; random, pct), examples (hypothesis) or most interleavings (exhaustive)")
    budget.add_argument("--time", type=positive_float("--time"), help="wall-clock seconds instead of a run budget")
    p.add_argument("--seed", type=seed, default=0, help="search seed (default: 0)")
    p.add_argument("--jobs", type=positive("--jobs", 100_000), help="override job.count (exhaustive: default 1)")
    p.add_argument("--invariants", help="comma-separated invariant IDs that count (default: every invariant)")
    p.add_argument("--depth", type=positive("--depth", 100),
                   help="PCT bug depth d (default: deepen, depth 1, 2, 3, ... within the budget)")
    p.add_argument("--window", type=positive_float("--window"),
                   help="most ms an operation may be held back after it could first have arrived "
                        "(pct default: 100; exhaustive: no bound)")
    p.add_argument("--worlds", type=positive("--worlds", 100_000),
                   help="how many worlds (seeds --seed, --seed+1, ...) pct and exhaustive split the budget over "
                        "(default: pct one per 250 runs, exhaustive as many as the budget covers)")
    p.add_argument("--database", default=".hypothesis/examples",
                   help="Hypothesis example database directory (default: .hypothesis/examples)")
    p.add_argument("--no-database", action="store_true", help="do not read or save Hypothesis examples")
    p.add_argument("--out", type=output_file("--out"), help=f"trace file to write (default: ./{DEFAULT_TRACE})")
    p.add_argument("--json", action="store_true", help='print {"found", "method", "explored", "seconds", "ops", "trace"}')
    add_limit_flags(p)
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from sim.engine import scenario as scenarios
    from sim.judge.timeline import transcript
    from sim.record import conflicts
    from sim.runs.runner import check_strategy_table
    from sim.runs.strategy_source import is_user, origin
    from sim.search import explore as ex
    from sim.search import trace

    scenario = scenarios.load(args.scenario)
    strategy = load_strategy_arg(args.strategy)
    check_strategy_table(strategy, scenario)
    # A trace names a user's strategy as module:attr (with where it lives), a built-in by name.
    ref = args.strategy.strip() if is_user(args.strategy.strip()) else strategy.name
    source = origin(ref)
    jobs = args.jobs if args.jobs is not None else (1 if args.method == "exhaustive" else None)
    if jobs is not None:
        scenario = scenario.with_values({"job.count": jobs})
    if args.method == "exhaustive" and args.time is not None:
        raise UsageError("--time does not apply to --method exhaustive (it enumerates; --budget caps the interleavings)")
    if args.invariants is not None and not [i for i in args.invariants.split(",") if i.strip()]:
        raise UsageError("--invariants needs at least one invariant ID (see 'racetrack invariants')")
    _check_invariants(args.invariants, scenario)
    out = Path(args.out or DEFAULT_TRACE)
    # Before the search: writing the trace over what the command reads would destroy it.
    refuse_overwriting([("--out", out)], _inputs(args.scenario, scenario, source))
    with limits_applied(args):
        result = ex.explore(
            scenario, strategy, args.method, seed=args.seed, runs=args.budget, seconds=args.time,
            depth=args.depth, window_ms=args.window, worlds=args.worlds, database=None if args.no_database else args.database,
            invariants=tuple(i.strip() for i in (args.invariants or "").split(",") if i.strip()),
        )
    found = result.found
    if found is not None:
        data = trace.counterexample_data(
            found.case, found.run.record, found.run.schedule, found.violations, strategy=ref,
            backend="memory", found_by={"method": _found_by(args.method, result.explored), "seed": args.seed},
            strategy_source=source.to_data() if source else None, table=scenario.table,
        )
        trace.write(out, data, f"--out {out}")
    if args.json:
        print(json.dumps({
            "found": found is not None, "method": args.method, "explored": result.explored, "seconds": result.seconds,
            "ops": found.ops if found else None, "trace": str(out) if found else None,
        }))
        return 1 if found else 0
    print(f"racetrack explore {scenario.name} --strategy {ref} --method {args.method} --seed {args.seed}")
    print(_explored_line(args.method, result.explored, result.seconds))
    print(f"coverage: {conflicts.sentence(result.explored['coverage'])}")
    if args.method == "exhaustive" and result.explored["examples"]:
        print("violating interleavings (first ones, each actor's operations in order):")
        for line in result.explored["examples"]:
            print(f"  {line}")
    if found is None:
        print(f"no counterexample found within the budget: {strategy.name} held every invariant in what was explored")
        return 0
    print()
    print(f"counterexample: {found.jobs} job(s), {found.ops} database operations")
    print(transcript(found.run.record, found.violations, found.case.clocks))
    print()
    print("violations:")
    for v in found.violations:
        print(f"  {v.line()}")
    # The hint runs as printed from any directory: the trace knows where its strategy lives.
    print(f"\ntrace: {out}\nreplay: racetrack replay {shlex.quote(str(out.resolve()))}")
    return 1


def _check_invariants(text: str | None, scenario: Any) -> None:
    """Every ID of ``--invariants`` names an invariant this scenario judges: a built-in one, or a
    row invariant its ``[invariants.rows]`` declares; one line naming the option otherwise."""
    from sim.judge.invariants import INVARIANT_IDS

    own = [r.id for r in scenario.lifecycle.rows]
    for i in (i.strip() for i in (text or "").split(",")):
        if i and i not in INVARIANT_IDS and i not in own:
            raise UsageError(f"--invariants: unknown invariant {i!r} (known: {', '.join([*INVARIANT_IDS, *own])})")


def _inputs(argument: str, scenario: Any, source: Any) -> list[tuple[str, Path]]:
    """The files explore reads: the scenario file, its table's SQL, a user's strategy file."""
    from sim.engine.scenario import bundled_dir

    files = scenario_inputs(argument, scenario, bundled_dir())
    if source is not None:
        files.append(("strategy file", Path(source.file)))
    return files


def _found_by(method: str, explored: dict[str, Any]) -> str:
    """The method that found the counterexample (a portfolio names its part)."""
    return f"portfolio/{explored['found_by']}" if method == "portfolio" else method


def _explored_line(method: str, explored: dict[str, Any], seconds: float) -> str:
    if method == "portfolio":
        lines = []
        for part in explored["parts"]:
            if "skipped" in part:
                lines.append(f"  {part['method']}: skipped ({part['skipped']})")
            else:
                lines.append("  " + _explored_line(part["method"], part["explored"], part["seconds"]).replace("\n", "\n  "))
        who = f"found by {explored['found_by']}" if explored["found_by"] else "nothing found"
        return f"portfolio ({', '.join(p['method'] for p in explored['parts'])}): {who}; {seconds:.2f} s\n" + "\n".join(lines)
    if method == "exhaustive":
        total = explored["interleavings"]
        window = f", window {explored['window_ms']} ms" if explored.get("window_ms") is not None else ""
        inv = ", ".join(f"{k} {v}" for k, v in sorted(explored["by_invariant"].items())) or "none"
        about = f"{'' if explored['estimate_exact'] else 'about '}{explored['estimate']} estimated before running"
        first, last = explored["world_seeds"]
        worlds = f"world seed {first}" if explored["worlds"] == 1 else f"{explored['worlds']} worlds (seeds {first}..{last})"
        if explored["complete"]:
            done = f"all {total} interleavings of {worlds} ran ({about}; handlers' branches change the count)"
        else:
            done = (f"{explored['ran']} interleavings of {worlds} ({about}), {explored['worlds_complete']} "
                    f"world(s) complete")
        if explored.get("stopped"):
            done += f"; stopped: {'--budget' if explored['stopped'] == 'budget' else explored['stopped']}"
        return (
            f"exhaustive: {done}, "
            f"{explored['distinct_outcomes']} distinct outcomes, {explored['violating']} violate{window}; by invariant: {inv}; {seconds:.2f} s"
        )
    if method == "pct":
        return pct_lines(explored, seconds)
    if method == "hypothesis":
        extra = f" ({explored['runs_to_first']} to the first, {explored.get('shrink_runs', 0)} shrinking)" if explored.get("runs_to_first") else ""
        return f"hypothesis: {explored['runs']} examples{extra}; {seconds:.2f} s"
    return f"random: {explored['runs']} seeded runs; {seconds:.2f} s"


def pct_lines(explored: dict[str, Any], seconds: float) -> str:
    """What PCT ran and what that guarantees, per depth, in the words the guarantee holds in."""
    first, last = explored["world_seeds"]
    worlds = f"world seed {first}" if explored["worlds"] == 1 else f"{explored['worlds']} worlds (seeds {first}..{last})"
    depths = ", ".join(f"depth {d}: {n} runs" for d, n in explored["depths"].items())
    how = "deepening" if explored["deepening"] else "fixed depth"
    every = ", ".join(f"depth {d} >= {p:.3g}" for d, p in explored["bound_every_world"].items())
    some = ", ".join(f"depth {d} >= {p:.3g}" for d, p in explored["bound_some_worlds"].items())
    lines = [
        f"pct: {explored['runs']} runs over {worlds}, {how} ({depths}); up to {explored['actors']} actors, "
        f"{explored['steps']} operations; window {explored['window_ms']} ms (longest hold-back {explored['max_hold_ms']} ms); "
        f"{seconds:.2f} s",
        f"  guarantee, for a bug some order within the window reaches: in every world searched, found with "
        f"probability {every or 'none'}; in 1 of 10 worlds only: {some or 'none'}",
    ]
    if explored["worlds"] and not explored["bound_every_world"]:
        lines.append("  no depth was covered: raise --budget")
    if "found_depth" in explored:
        lines.append(f"  found at depth {explored['found_depth']} in world seed {explored['found_world']}, run {explored['found_run']}")
    return "\n".join(lines)
