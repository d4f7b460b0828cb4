"""``racetrack check``: judge the scenarios' ``[expect]`` tables (what each strategy must show)
over many seeds; exit 0 only if every expectation holds, optionally with a JUnit file for CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sim.cli.args import (
    UsageError,
    add_backend_flags,
    add_execution_flags,
    add_limit_flags,
    add_seeds_flags,
    backend_spec,
    execution,
    limits_applied,
    limits_of,
    output_file,
    output_folder,
    user_modules_from_cwd,
    whole,
    with_table_sql,
)
from sim.cli.output import Progress, refuse_overwriting, scenario_inputs, strategy_inputs


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="judge the scenarios' [expect] tables: exit 0 only if every expectation holds")
    p.add_argument("scenarios", nargs="*", help="scenario names or paths (default: every bundled scenario with [expect])")
    add_seeds_flags(p, runs=200)
    p.add_argument("--search", type=whole("--search", 0, 10_000_000), metavar="RUNS",
                   help="search runs per judged strategy beyond the sweep: exhaustive orders of one job and deepening "
                        "PCT across worlds (default: the scenario's [expect] search, else 100; 0: the sweep alone)")
    p.add_argument("--traces", metavar="DIR", default="racetrack-check-traces", type=output_folder("--traces"),
                   help="where a counterexample the search finds is written (default: ./racetrack-check-traces)")
    p.add_argument("--junit", metavar="FILE", type=output_file("--junit"), help="also write JUnit XML: one testcase per scenario and strategy")
    add_backend_flags(p)
    add_execution_flags(p)
    add_limit_flags(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from sim.engine import scenario as scenarios
    from sim.runs import check
    from sim.search import gate

    named = bool(args.scenarios)
    targets = [(ref, with_table_sql(args, scenarios.load(ref))) for ref in (args.scenarios or scenarios.bundled_names())]
    if named:
        missing = [sc.source for _, sc in targets if not sc.expect]
        if missing:
            raise UsageError(f"{missing[0]}: no [expect] table, nothing to check (see docs/scenarios.md, Expectations)")
    targets = [(ref, sc) for ref, sc in targets if sc.expect]
    names: dict[str, str] = {}
    for ref, sc in targets:  # verdicts, traces and JUnit suites are named by the scenario's name
        other = names.setdefault(sc.name, ref)
        if other != ref:
            raise UsageError(f"{other} and {ref} are both named {sc.name!r}: their verdicts, traces and JUnit suites "
                             "could not be told apart; rename one")
    if not targets:
        raise UsageError("no bundled scenario has an [expect] table: nothing to check")
    judged = sum(1 for _, sc in targets for e in sc.expect.values() if e != "any")
    user_modules_from_cwd([name for _, sc in targets for name in sc.expect])
    if args.junit:  # before any run: the JUnit file must not replace what the command reads
        inputs = [f for ref, sc in targets for f in scenario_inputs(ref, sc, scenarios.bundled_dir(), args.table_sql)]
        refuse_overwriting([("--junit", args.junit)], inputs + strategy_inputs(n for _, sc in targets for n in sc.expect))
    progress = Progress(judged * args.runs, enabled=True)
    verdicts = []
    try:
        for ref, sc in targets:
            verdicts += check.check_scenario(ref, sc, args.runs, args.seed, execution(args), backend_spec(args), progress.step, limits=limits_of(args))
    finally:
        progress.close()
    searched = []
    with limits_applied(args):
        for v in verdicts:
            runs = args.search if args.search is not None else v.expectation.scenario.search
            searched.append(gate.search_verdict(v, gate.DEFAULT_SEARCH if runs is None else runs, args.seed, Path(args.traces)))
    verdicts = searched
    for v in verdicts:
        print("\n".join(check.verdict_lines(v)))
    errored = sum(1 for v in verdicts if v.errored)
    failed = sum(1 for v in verdicts if not v.passed and not v.errored)
    skipped = sum(1 for v in verdicts if v.skipped)
    print(
        f"\ncheck: {len(verdicts) - failed - skipped - errored} passed, {failed} failed, "
        + (f"{errored} could not be judged (the strategy's code stopped runs), " if errored else "")
        + f"{skipped} not judged "
        f"({args.runs} runs each, seeds {args.seed}..{args.seed + args.runs - 1}; "
        f"{'no search' if args.search == 0 else 'search: ' + (str(args.search) if args.search else '[expect] search or 100') + ' runs each'})"
    )
    if args.junit:
        from sim.runs.results_file import write_output_bytes

        write_output_bytes(Path(args.junit), check.junit_xml(verdicts), f"--junit {args.junit}")
    if errored:  # a strategy that could not be judged is the user's bug, not a verdict on the race
        first = next(v for v in verdicts if v.errored)
        print(f"racetrack: {errored} expectation(s) could not be judged; first: {first.expectation.scenario.name} "
              f"{first.expectation.strategy}: {first.errors[0]}", file=sys.stderr)
        return 2
    return 1 if failed else 0
