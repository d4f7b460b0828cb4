"""The ``racetrack`` command line.

Exit codes (the design's contract): 0 all invariants held or the command did its job; 1 a
violation was found where the command judges; 2 bad input or an unusable environment, said in
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sim.engine import scenario as scenarios
from sim.judge.invariants import INVARIANTS
from sim.judge.timeline import render
from sim.runs import sweep
from sim.runs.backends import KINDS, BackendSpec, BackendUnavailable, close_backend, open_backend, run_errors
from sim.runs.runner import plan, run_one, summarize
from tracker.strategies import BUILTIN, Strategy, StrategyNotFound, load_strategy


class UsageError(Exception):
    """Bad input: the message is the one line the user sees; exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# --- shared argument handling ------------------------------------------------------------------


def _strategies(spec: str | None) -> list[Strategy]:
    names = [n.strip() for n in (spec or ",".join(BUILTIN)).split(",") if n.strip()]
    if not names:
        raise UsageError("--strategies needs at least one name")
    _user_modules_from_cwd(names)
    try:
        return [load_strategy(n) for n in names]
    except StrategyNotFound as exc:
        raise UsageError(str(exc)) from None


def _user_modules_from_cwd(names: Sequence[str]) -> None:
    if any(":" in n for n in names) and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module:attr names a module of the user's, as `python -m` would find it


def _scenario(name: str) -> scenarios.Scenario:
    try:
        return scenarios.load(name)
    except scenarios.ScenarioError as exc:
        raise UsageError(str(exc)) from None


def _whole(name: str, minimum: int) -> Callable[[str], int]:
    """An argument type: a whole number >= ``minimum``, or one line naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum} (got {value})")
        return value

    return parse


def _positive(name: str) -> Callable[[str], int]:
    return _whole(name, 1)


_seed = _whole("--seed", 0)


class Progress:
    """A one-line progress bar on a terminal (stderr); silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.perf_counter()  # wall-clock ok: progress display only
        self._last = 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()  # wall-clock ok: progress display only
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs  {rate:,.0f} runs/s  ETA {eta:,.0f}s "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


# --- commands ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _scenario(args.scenario)
    (strategy,) = _strategies(args.strategy)
    backend = open_backend(_backend_spec(args))
    try:
        result = run_one(scenario, strategy, args.seed, backend)
    except run_errors() as exc:
        raise UsageError(str(exc)) from None
    finally:
        close_backend(backend)
    if args.json:
        out = {
            "scenario": result.scenario,
            "strategy": result.strategy,
            "backend": result.backend,
            "seed": result.seed,
            "violations": [{"invariant": v.invariant, "job": v.job, "detail": v.detail} for v in result.violations],
            "ops": result.ops,
        }
        if result.disagreements is not None:
            out["disagreements"] = list(result.disagreements)
        print(json.dumps(out, sort_keys=False))
    else:
        header = (
            f"racetrack run {scenario.name} --strategy {strategy.name} --seed {args.seed}  (backend {result.backend})\n"
            f"{len(result.record.truth)} job(s), {result.ops} database operation(s), "
            f"{result.record.end_us / 1000:.3f} ms simulated, timestamp tolerance {result.record.tolerance_us / 1000:.3f} ms"
        )
        print(render(result.record, result.violations, header))
        print()
        for crash in result.crashes:
            print(f"handler crash: {crash}")
        if result.disagreements is not None:
            print(_differential_line(len(result.disagreements), result.disagreements[:1]))
        if result.violations:
            print(f"verdict: {len(result.violations)} violation(s)")
            for v in result.violations:
                print(f"  {v.line()}")
        else:
            print(f"verdict: all {len(INVARIANTS)} invariants held")
    return 1 if result.violations or result.disagreements else 0


def _strategy_refs(spec: str | None) -> list[str]:
    """Strategy references as given (loaded once here so a bad one is one line, exit 2); worker
    processes load them again by reference."""
    names = [n.strip() for n in (spec or ",".join(BUILTIN)).split(",") if n.strip()]
    _strategies(",".join(names))
    return names


def _execution(args: argparse.Namespace) -> sweep.Execution:
    return sweep.Execution(workers=args.workers, executor=args.executor, scheduler=args.scheduler)


def _resume_command(args: argparse.Namespace) -> str:
    argv = [a for a in getattr(args, "argv", None) or sys.argv[1:] if a != "--resume"]
    return "racetrack " + shlex.join([*argv, "--resume"])


def cmd_sweep(args: argparse.Namespace) -> int:
    names = args.scenarios or scenarios.bundled_names()
    loaded = [_scenario(n) for n in names]
    loaded = _grid_variants(loaded, args.grid)
    refs = _strategy_refs(args.strategies)
    spec = _backend_spec(args)
    out = Path(args.out) if args.out else None
    report = Path(args.report) if args.report else None
    if report is not None and out is None:
        out = report / "results.parquet"
    job = sweep.Sweep(tuple(loaded), tuple(refs), args.runs, args.seed, spec)
    progress = Progress(job.total, enabled=not args.json)
    picks: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]] = {}
    try:
        run = sweep.SweepRun(job, _execution(args), out, args.resume, on_rows=progress.step)
        with run:
            rows = run.rows()
            if report is not None:
                items = plan(loaded, _strategies(args.strategies), args.runs, args.seed)
                rows = _keep_shortest(zip(items, rows, strict=True), picks)
            summary = summarize(rows)  # folds rows as they stream: memory stays flat
    except sweep.SweepError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        progress.close()
        kept = ""
        if out is not None:
            kept = f"; {run.done} finished run(s) kept in {out.name}.partial; continue with: {_resume_command(args)}"
        print(f"racetrack: interrupted{kept}", file=sys.stderr)
        return 130
    progress.close()
    if report is not None:
        assert out is not None
        _sweep_report(list(picks.values()), report, out, spec)
    if args.json:
        print(json.dumps({"results": summary}))
    else:
        print(format_summary(summary))
        for line in _backend_lines(summary):
            print(line)
        if out is not None:
            print(f"\nresults: {out} ({run.done} rows)")
        if args.report:
            print(f"report: {Path(args.report) / 'index.html'}")
    # Under --backend both the sweep judges one thing: that the model agrees with PostgreSQL.
    return 1 if any(e.get("disagreements") for e in summary) else 0


def _backend_spec(args: argparse.Namespace) -> BackendSpec:
    return BackendSpec(kind=args.backend, dsn=args.dsn, schema=args.schema)


def _differential_line(count: int, first: Sequence[str]) -> str:
    if not count:
        return "differential: memory and PostgreSQL agreed on every operation and the final rows"
    return f"differential: {count} disagreement(s); first: {first[0]}"


def _backend_lines(summary: list[dict[str, Any]]) -> list[str]:
    """Runs that could not finish, and the differential verdict, under the table."""
    lines = []
    errors = sum(e.get("errors", 0) for e in summary)
    if errors:
        lines.append(f"\nerrors: {errors} run(s) could not finish (see the 'error' column of --out)")
    compared = [e for e in summary if "disagreements" in e]
    if compared:
        count = sum(e["disagreements"] for e in compared)
        first = [f"{e['scenario']} {e['strategy']} {e['first_disagreement']}" for e in compared if e.get("first_disagreement")]
        lines.append(_differential_line(count, first[:1]))
    return lines


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=KINDS, default="memory",
                   help="memory (default), postgres (a real server), both (differential: compare every operation)")
    p.add_argument("--dsn", help="PostgreSQL connection string (default: DATABASE_URL, else PG* variables, else an embedded server)")
    p.add_argument("--schema", help="prefix of racetrack's own schema on the server (default: racetrack; _<pid>_<n> is added)")


def cmd_check(args: argparse.Namespace) -> int:
    from sim.runs import check

    named = bool(args.scenarios)
    targets = [(ref, _scenario(ref)) for ref in (args.scenarios or scenarios.bundled_names())]
    if named:
        missing = [sc.source for _, sc in targets if not sc.expect]
        if missing:
            raise UsageError(f"{missing[0]}: no [expect] table, nothing to check (see README: Expectations)")
    targets = [(ref, sc) for ref, sc in targets if sc.expect]
    if not targets:
        raise UsageError("no bundled scenario has an [expect] table: nothing to check")
    judged = sum(1 for _, sc in targets for e in sc.expect.values() if e != "any")
    _user_modules_from_cwd([name for _, sc in targets for name in sc.expect])
    progress = Progress(judged * args.runs, enabled=True)
    verdicts = []
    try:
        for ref, sc in targets:
            verdicts += check.check_scenario(ref, sc, args.runs, args.seed, _execution(args), _backend_spec(args), progress.step)
    except sweep.SweepError as exc:
        raise UsageError(str(exc)) from None
    finally:
        progress.close()
    for v in verdicts:
        print("\n".join(check.verdict_lines(v)))
    failed = sum(1 for v in verdicts if not v.passed)
    skipped = sum(1 for v in verdicts if v.skipped)
    print(
        f"\ncheck: {len(verdicts) - failed - skipped} passed, {failed} failed, {skipped} not judged "
        f"({args.runs} runs each, seeds {args.seed}..{args.seed + args.runs - 1})"
    )
    if args.junit:
        junit = Path(args.junit)
        junit.parent.mkdir(parents=True, exist_ok=True)
        tmp = junit.with_name(junit.name + ".partial")
        tmp.write_bytes(check.junit_xml(verdicts))
        tmp.replace(junit)
    return 1 if failed else 0


def format_summary(summary: list[dict[str, Any]]) -> str:
    from sim.judge.invariants import INVARIANT_IDS

    short = {i: "".join(w[0] for w in i.split("-")) for i in INVARIANT_IDS}
    head = f"{'scenario':<20} {'strategy':<12} {'runs':>6} {'violating':>10} " + " ".join(f"{short[i]:>5}" for i in INVARIANT_IDS)
    lines = [head, "-" * len(head)]
    for e in summary:
        lines.append(
            f"{e['scenario']:<20} {e['strategy']:<12} {e['runs']:>6} {e['violating_runs']:>10} "
            + " ".join(f"{e['violations'][i]:>5}" for i in INVARIANT_IDS)
        )
    lines.append("")
    lines.append("columns: violations per invariant: " + ", ".join(f"{short[i]} = {i}" for i in INVARIANT_IDS))
    return "\n".join(lines)


def cmd_strategies(args: argparse.Namespace) -> int:
    for name in BUILTIN:
        print(f"{name:<12} {load_strategy(name).summary}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    if args.params:
        print(scenarios.format_params_markdown())
        return 0
    for name in scenarios.bundled_names():
        print(f"{name:<20} {scenarios.load(name)['description']}")
    return 0


def cmd_invariants(args: argparse.Namespace) -> int:
    for inv in INVARIANTS:
        print(f"{inv.id:<20} {inv.summary}")
    return 0


def _execution_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_positive("--workers"), default=sweep.default_workers(),
                   help="worker processes (default: all cores, here %(default)s); results do not depend on it")
    p.add_argument("--executor", choices=sweep.EXECUTORS, default="local",
                   help="local: a process pool on this machine; dask: a Dask cluster (default: local)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="the Dask scheduler to use (implies --executor dask; without it, dask starts a LocalCluster of --workers)")


# --- explore, replay, export (issue 4) ---------------------------------------------------------

DEFAULT_TRACE = "racetrack-counterexample.json"


def _positive_float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be > 0 (got {text})")
        return value

    return parse


def _explored_line(method: str, explored: dict[str, Any], seconds: float) -> str:
    if method == "exhaustive":
        total = explored["interleavings"]
        window = f", window {explored['window_ms']} ms" if explored.get("window_ms") is not None else ""
        inv = ", ".join(f"{k} {v}" for k, v in sorted(explored["by_invariant"].items())) or "none"
        about = f"{'' if explored['estimate_exact'] else 'up to '}{explored['estimate']} estimated before running"
        if explored["complete"]:
            done = f"all {total} interleavings ran ({about}; handlers' branches change the count)"
        else:
            done = f"stopped after {explored['ran']} of {about} interleavings (--budget)"
        return (
            f"exhaustive: {done}, "
            f"{explored['distinct_outcomes']} distinct outcomes, {explored['violating']} violate{window}; by invariant: {inv}; {seconds:.2f} s"
        )
    if method == "pct":
        d = explored["depth"]
        return (
            f"pct: {explored['runs']} runs, depth {d}, {explored['actors']} actors, {explored['steps']} operations, "
            f"window {explored['window_ms']} ms: each run finds a depth-{d} bug with probability >= "
            f"1/({explored['actors']}*{explored['steps']}^{d - 1}) = {explored['bound_per_run']:.3g}; "
            f"over {explored['runs']} runs >= {explored['bound_cumulative']:.3g}; {seconds:.2f} s"
        )
    if method == "hypothesis":
        extra = f" ({explored['runs_to_first']} to the first, {explored.get('shrink_runs', 0)} shrinking)" if explored.get("runs_to_first") else ""
        return f"hypothesis: {explored['runs']} examples{extra}; {seconds:.2f} s"
    return f"random: {explored['runs']} seeded runs; {seconds:.2f} s"


def cmd_explore(args: argparse.Namespace) -> int:
    from sim.judge.timeline import transcript
    from sim.search import explore as ex
    from sim.search import trace

    scenario = _scenario(args.scenario)
    (strategy,) = _strategies(args.strategy)
    jobs = args.jobs if args.jobs is not None else (1 if args.method == "exhaustive" else None)
    if jobs is not None:
        scenario = scenario.with_values({"job.count": jobs})
    if args.method == "exhaustive" and args.time is not None:
        raise UsageError("--time does not apply to --method exhaustive (it enumerates; --budget caps the interleavings)")
    try:
        result = ex.explore(
            scenario, strategy, args.method, seed=args.seed, runs=args.budget, seconds=args.time,
            depth=args.depth, window_ms=args.window, database=None if args.no_database else args.database,
            invariants=tuple(i.strip() for i in (args.invariants or "").split(",") if i.strip()),
        )
    except ex.ExploreError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out or DEFAULT_TRACE)
    found = result.found
    if found is not None:
        data = trace.counterexample_data(
            found.case, found.run.record, found.run.schedule, found.violations, strategy=strategy.name,
            backend="memory", found_by={"method": args.method, "seed": args.seed},
        )
        trace.write(out, data)
    if args.json:
        print(json.dumps({
            "found": found is not None, "method": args.method, "explored": result.explored, "seconds": result.seconds,
            "ops": found.ops if found else None, "trace": str(out) if found else None,
        }))
        return 1 if found else 0
    print(f"racetrack explore {scenario.name} --strategy {strategy.name} --method {args.method} --seed {args.seed}")
    print(_explored_line(args.method, result.explored, result.seconds))
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
    print(f"\ntrace: {out}\nreplay: racetrack replay {out}")
    return 1


def cmd_replay(args: argparse.Namespace) -> int:
    from sim.judge.timeline import transcript
    from sim.search import trace
    from sim.search.replay import replay_data

    try:
        data = trace.read(Path(args.trace))
    except trace.TraceError as exc:
        raise UsageError(str(exc)) from None
    strategy = _strategies(args.strategy)[0] if args.strategy else None
    spec = _backend_spec(args)
    try:
        result = replay_data(data, strategy, spec, strict=args.strict)
    except trace.TraceError as exc:
        raise UsageError(f"{args.trace}: {exc}") from None
    except StrategyNotFound as exc:
        raise UsageError(f"{args.trace}: {exc}") from None
    if args.json:
        print(json.dumps({
            "reproduced": result.reproduced, "exact": result.exact, "strategy": result.strategy,
            "backend": result.backend, "ops": result.run.ops,
            "violations": [{"invariant": v.invariant, "job": v.job, "detail": v.detail} for v in result.violations],
        }))
    else:
        header = f"racetrack replay {args.trace} --strategy {result.strategy} --backend {result.backend}"
        print(transcript(result.run.record, result.violations, result.case.clocks, header))
        print()
        print(result.summary())
    return 1 if result.reproduced else 0


def cmd_export(args: argparse.Namespace) -> int:
    from sim.search import export, trace

    if not args.pytest and not args.isolation:
        raise UsageError("export needs --pytest FILE and/or --isolation FILE")
    try:
        data = trace.read(Path(args.trace))
        strategy = args.strategy or str(data["strategy"])
        _strategies(strategy)
        outputs = []
        if args.pytest:
            outputs.append((Path(args.pytest), export.pytest_file(data, strategy, args.trace)))
        if args.isolation:
            outputs.append((Path(args.isolation), export.isolation_spec(data, args.trace)))
    except trace.TraceError as exc:
        raise UsageError(str(exc)) from None
    for path, text in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="racetrack", description="Find, explain and compare races between a job queue's status handlers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="one run: a timeline and the verdict (exit 1 on a violation)")
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--seed", type=_seed, default=0, help="run seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    _add_backend_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="many seeded runs of scenarios x strategies; a table per pair")
    p.add_argument("scenarios", nargs="*", help="scenario names or paths (default: every bundled scenario)")
    p.add_argument("--strategies", help="comma-separated names or module:attr (default: every built-in)")
    p.add_argument("--runs", type=_positive("--runs"), default=100, help="runs per scenario and strategy (default: 100)")
    p.add_argument("--seed", type=_seed, default=0, help="first seed; run i uses seed+i (default: 0)")
    p.add_argument("--out", help="write every run's result row to FILE.parquet or FILE.csv")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_backend_flags(p)
    _add_report_flags(p)
    _execution_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep whose partial results are FILE.partial (--out FILE)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("check", help="judge the scenarios' [expect] tables: exit 0 only if every expectation holds")
    p.add_argument("scenarios", nargs="*", help="scenario names or paths (default: every bundled scenario with [expect])")
    p.add_argument("--runs", type=_positive("--runs"), default=200, help="runs per scenario and strategy (default: 200)")
    p.add_argument("--seed", type=_seed, default=0, help="first seed; run i uses seed+i (default: 0)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML: one testcase per scenario and strategy")
    _add_backend_flags(p)
    _execution_arguments(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explore", help="search for a counterexample, shrink it, write it as a trace (exit 1 when found)")
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--method", choices=("random", "hypothesis", "exhaustive", "pct"), default="hypothesis",
                   help="how to search (default: hypothesis)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=_positive("--budget"),
                        help="runs (random, pct), examples (hypothesis) or most interleavings (exhaustive)")
    budget.add_argument("--time", type=_positive_float("--time"), help="wall-clock seconds instead of a run budget")
    p.add_argument("--seed", type=_seed, default=0, help="search seed (default: 0)")
    p.add_argument("--jobs", type=_positive("--jobs"), help="override job.count (exhaustive: default 1)")
    p.add_argument("--invariants", help="comma-separated invariant IDs that count (default: every invariant)")
    p.add_argument("--depth", type=_positive("--depth"), default=2, help="PCT bug depth d (default: 2)")
    p.add_argument("--window", type=_positive_float("--window"),
                   help="most ms an operation may be held back behind the earliest ready one (pct default: 100; exhaustive: no bound)")
    p.add_argument("--database", default=".hypothesis/examples",
                   help="Hypothesis example database directory (default: .hypothesis/examples)")
    p.add_argument("--no-database", action="store_true", help="do not read or save Hypothesis examples")
    p.add_argument("--out", help=f"trace file to write (default: ./{DEFAULT_TRACE})")
    p.add_argument("--json", action="store_true", help='print {"found", "method", "explored", "seconds", "ops", "trace"}')
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("replay", help="re-run a trace's schedule (exit 1 when its violation reproduces)")
    p.add_argument("trace", help="a trace file written by explore")
    _add_backend_flags(p)
    p.add_argument("--strategy", help="replay another strategy's handlers in the trace's order (default: the trace's)")
    p.add_argument("--strict", action="store_true", help="any violation counts, not only the trace's own")
    p.add_argument("--json", action="store_true", help='print {"reproduced", "exact", "strategy", "backend", "ops", "violations"}')
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export", help="write a trace as a pytest regression test and/or an isolation tester spec")
    p.add_argument("trace", help="a trace file written by explore")
    p.add_argument("--pytest", metavar="FILE", help="write a pytest module that fails while the violation reproduces")
    p.add_argument("--isolation", metavar="FILE", help="write a PostgreSQL isolation tester spec (.spec)")
    p.add_argument("--strategy", help="the strategy the pytest test replays (default: the trace's)")
    p.set_defaults(func=cmd_export)

    _add_report_command(sub)

    p = sub.add_parser("strategies", help="list the built-in strategies")
    p.set_defaults(func=cmd_strategies)
    p = sub.add_parser("scenarios", help="list the bundled scenarios")
    p.add_argument("--params", action="store_true", help="print every scenario parameter with its default (Markdown)")
    p.set_defaults(func=cmd_scenarios)
    p = sub.add_parser("invariants", help="list the invariants and their IDs")
    p.set_defaults(func=cmd_invariants)
    from sim.cli import calibrate, live  # live mode's commands own their modules

    live.add_live_parser(sub)
    calibrate.add_calibrate_parser(sub)
    return parser


# --- reports and parameter grids (issue 5) -----------------------------------------------------


def _grid_variants(loaded: list[scenarios.Scenario], grid: list[str] | None) -> list[scenarios.Scenario]:
    """Every scenario times the cross product of the ``--grid`` axes (unchanged without one)."""
    if not grid:
        return loaded
    try:
        axes = [scenarios.parse_grid(g) for g in grid]
        return [v for s in loaded for v in scenarios.grid_variants(s, axes)]
    except scenarios.ScenarioError as exc:
        raise UsageError(str(exc)) from None


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
    from reports.inputs import ReportInputError
    from sim.search.counterexamples import save_shortest

    trace_dir = directory / "traces"
    for stale in sorted(trace_dir.glob("*.json")) if trace_dir.is_dir() else []:
        stale.unlink()  # traces of an earlier sweep into the same directory would be mixed in
    written = save_shortest([i for i, _ in picks], [r for _, r in picks], trace_dir, spec)
    try:
        write_report([results, *written], directory)
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None


def cmd_report(args: argparse.Namespace) -> int:
    from reports.compose import write_report
    from reports.inputs import ReportInputError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    try:
        report = write_report([Path(p) for p in args.inputs], out)
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None
    runs = len(report.summary) and int(report.summary["runs"].sum())
    print(f"report: {out / 'index.html'} ({runs} runs, {report.violations} violating; {len(report.images)} figures; "
          f"also report.md, summary.csv)")
    return 0


def _add_report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", action="append", metavar="PATH=V1,V2,...",
                   help="sweep a parameter or distribution field over values (repeat for a cross product), "
                        "e.g. job.duration.median_ms=10,50,100")
    p.add_argument("--report", metavar="DIR", help="also write a report (and the shortest counterexample traces) into DIR")


def _add_report_command(sub: Any) -> None:
    p = sub.add_parser("report", help="turn results files and traces into an HTML/Markdown report with tables and plots")
    p.add_argument("inputs", nargs="+", metavar="RESULTS", help="results files (.parquet, .csv) and trace files (.json)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="directory for index.html, report.md, PNGs, summary.csv")
    p.set_defaults(func=cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv) if argv is not None else sys.argv[1:]
        return int(args.func(args))
    except UsageError as exc:
        print(f"racetrack: {exc}" if not str(exc).startswith("racetrack") else str(exc), file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"racetrack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("racetrack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())
