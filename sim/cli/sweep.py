"""``racetrack sweep``: many seeded runs of scenarios x strategies (optionally over a parameter
grid), streamed to a results file and summed up as a table and one verdict line per scenario;
with ``--report DIR`` also the shortest counterexamples and the report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.cli.args import (
    UsageError,
    add_backend_flags,
    add_execution_flags,
    add_limit_flags,
    add_seeds_flags,
    backend_spec,
    execution,
    limits_of,
    load_strategies,
    output_file,
    output_folder,
    strategy_refs,
    with_table_sql,
)
from sim.cli.output import (
    Progress,
    backend_lines,
    format_summary,
    refuse_overwriting,
    scenario_inputs,
    strategy_inputs,
    sweep_heading,
    verdict_lines,
)
from tracker.errors import redact

if TYPE_CHECKING:
    from sim.engine.scenario import Scenario
    from sim.runs.backends import BackendSpec


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="many seeded runs of scenarios x strategies; a table per pair")
    p.add_argument("scenarios", nargs="*", help="scenario names or paths (default: every bundled scenario)")
    p.add_argument("--strategies", help="comma-separated names or module:attr (default: every built-in)")
    add_seeds_flags(p, runs=100)
    p.add_argument("--out", type=output_file("--out"), help="write every run's result row to FILE.parquet or FILE.csv")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_backend_flags(p)
    p.add_argument("--grid", action="append", metavar="PATH=V1,V2,...",
                   help="sweep a parameter or distribution field over values (repeat for a cross product), "
                        "e.g. job.duration.median_ms=10,50,100")
    p.add_argument("--report", metavar="DIR", type=output_folder("--report"), help="also write a report (and the shortest counterexample traces) into DIR")
    add_execution_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep whose partial results are FILE.partial (--out FILE)")
    add_limit_flags(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from sim.engine import scenario as scenarios
    from sim.runs import sweep
    from sim.runs.runner import plan, summarize

    names = args.scenarios or scenarios.bundled_names()
    loaded = [with_table_sql(args, scenarios.load(n)) for n in names]
    read = [f for n, sc in zip(names, loaded, strict=True) for f in scenario_inputs(n, sc, scenarios.bundled_dir(), args.table_sql)]
    loaded = _grid_variants(loaded, args.grid)
    refs = strategy_refs(args.strategies)
    spec = backend_spec(args)
    out = Path(args.out) if args.out else None
    report = Path(args.report) if args.report else None
    if report is not None and out is None:
        out = report / "results.parquet"
    job = sweep.Sweep(tuple(loaded), tuple(refs), args.runs, args.seed, spec, limits_of(args))
    job.require_distinct()  # rows name scenarios and strategies by name: two of one name would be one row
    if out is not None:  # before any run: the results must not replace what the sweep reads
        refuse_overwriting([("--out" if args.out else "--report", out)],
                           read + strategy_inputs(refs))
    if report is not None and out is not None and args.out:  # nor the report, written after the runs, the results
        from reports.compose import written_by_report

        if os.path.realpath(out.parent) == os.path.realpath(report) and written_by_report(out.name):
            raise UsageError(f"--out {out}: the report writes {out.name} into --report {report}, over the results; "
                             "give the results another name or folder")
    progress = Progress(job.total, enabled=not args.json)
    picks: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]] = {}
    errors: Counter[tuple[str, str]] = Counter()
    strategy_errors: Counter[tuple[str, str]] = Counter()
    firsts: dict[str, str] = {}  # the first run that could not finish, and the first the strategy stopped
    try:
        said = f"--report {report}" if report is not None and not args.out else None
        run = sweep.SweepRun(job, execution(args), out, args.resume, on_rows=progress.step, out_said=said)
        with run:
            rows = _count_errors(run.rows(), errors, strategy_errors, firsts)
            if report is not None:
                items = plan(loaded, load_strategies(refs), args.runs, args.seed)
                rows = _keep_shortest(zip(items, rows, strict=True), picks)
            summary = summarize(rows)  # folds rows as they stream: memory stays flat
    except KeyboardInterrupt:
        progress.close()
        kept = ""
        if out is not None:
            partial = run.results.partial if run.results is not None else f"{out}.partial"
            kept = f"; {run.done} finished run(s) kept in {partial}; continue with: {_resume_command(args)}"
        print(f"racetrack: interrupted{kept}", file=sys.stderr)
        return 130
    progress.close()
    if report is not None:
        assert out is not None
        _sweep_report(list(picks.values()), report, out, spec)
    if args.json:
        print(json.dumps({"results": summary}))
    else:
        print(sweep_heading(len(loaded), len(refs), args.runs, args.seed, spec.kind))
        print()
        print(format_summary(summary))
        print()
        for line in [*verdict_lines(summary, errors), *backend_lines(summary, sum(errors.values()), out, firsts.get("run", ""))]:
            print(line)
        if out is not None:
            print(f"\nresults: {out} ({run.done} rows)")
            if run.errors:
                print(f"{run.errors} run(s) could not finish; retry exactly those with: {_resume_command(args)}")
        if args.report:
            print(f"report: {Path(args.report) / 'index.html'}")
    if strategy_errors:
        # A strategy that crashed or ran away is the user's bug, not a finding about the race.
        print(f"racetrack: {sum(strategy_errors.values())} run(s) were not judged; first: {firsts['strategy']}", file=sys.stderr)
        return 2
    # Under --backend both the sweep judges one thing: that the model agrees with PostgreSQL.
    return 1 if any(e.get("disagreements") for e in summary) else 0


def _count_errors(
    rows: Iterable[dict[str, Any]], errors: Counter[tuple[str, str]], strategy_errors: Counter[tuple[str, str]],
    firsts: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """Pass rows through, counting per (scenario, strategy) the runs that could not finish, and
    among them those the strategy's own code stopped (a crash, a limit); ``firsts`` keeps the
    first of each (``run``, ``strategy``): its scenario, strategy, seed and error."""
    for row in rows:
        if row.get("error"):
            errors[(row["scenario"], row["strategy"])] += 1
            said = redact(f"{row['scenario']} {row['strategy']} seed {row['seed']}: {row['error']}")  # a handler's own text too
            firsts.setdefault("run", said)
            if str(row["error"]).startswith("strategy "):
                strategy_errors[(row["scenario"], row["strategy"])] += 1
                firsts.setdefault("strategy", said)
        yield row


def _resume_command(args: argparse.Namespace) -> str:
    from tracker.pg_server import mask_password

    # the password stays secret: the command names '***' where it was (PGPASSWORD or ~/.pgpass supplies it)
    argv = [mask_password(a, a) for a in getattr(args, "argv", None) or sys.argv[1:] if a != "--resume"]
    return "racetrack " + shlex.join([*argv, "--resume"])


def _grid_variants(loaded: list[Scenario], grid: list[str] | None) -> list[Scenario]:
    """Every scenario times the cross product of the ``--grid`` axes (unchanged without one)."""
    from sim.engine import scenario as scenarios

    if not grid:
        return loaded
    axes = [scenarios.parse_grid(g) for g in grid]
    return [v for s in loaded for v in scenarios.grid_variants(s, axes)]


def _keep_shortest(
    pairs: Any, picks: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]]
) -> Any:
    """Pass rows through, keeping per broken (base scenario, strategy, backend) the violating run
    with the fewest operations (ties: lowest seed, then plan order), as ``save_shortest`` picks."""
    from sim.engine.scenario import base_name

    for item, row in pairs:
        if row["violating"]:
            key = (base_name(row["scenario"]), row["strategy"], row["backend"])
            current = picks.get(key)
            if current is None or (row["ops"], row["seed"]) < (current[1]["ops"], current[1]["seed"]):
                picks[key] = (item, row)
        yield row


def _sweep_report(picks: list[tuple[Any, dict[str, Any]]], directory: Path, results: Path, spec: BackendSpec) -> None:
    """``sweep --report DIR``: the results (DIR/results.parquet unless --out named a file, streamed
    like any results file), the shortest counterexample of each broken pair in DIR/traces/, and
    the report."""
    from reports.compose import write_report
    from sim.search.counterexamples import save_shortest

    trace_dir = directory / "traces"
    for stale in sorted(trace_dir.glob("*.json")) if trace_dir.is_dir() else []:
        stale.unlink()  # traces of an earlier sweep into the same directory would be mixed in
    written = save_shortest([i for i, _ in picks], [r for _, r in picks], trace_dir, spec)
    write_report([results, *written], directory)
