"""``racetrack live``: a scenario's workload on a real BullMQ queue and PostgreSQL, judged like a
simulated run (docs/live.md).

Exit 0 when every run held every invariant, 1 when one was violated, 2 for bad input or an
unusable Redis or PostgreSQL (one line), 130 when interrupted (finished runs are still printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.cli.args import MAX_RUNS, UsageError, load_strategy_arg, nonempty, output_file, positive, positive_float, seed
from tracker.errors import redact

if TYPE_CHECKING:  # live mode (asyncio, psycopg, bullmq) and scenarios are imported when a live command runs:
    from sim.engine import scenario as scenarios  # --help and the listings do not pay for them
    from sim.live.runs import LiveBatch, LiveRun
    from tracker.strategies import Strategy


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", metavar="URL", type=nonempty("--redis", "a Redis URL"),
                   help="Redis for the queue (default: REDIS_URL, else an embedded Redis)")
    p.add_argument("--dsn", type=nonempty("--dsn", "a connection string"),
                   help="PostgreSQL for the table (default: DATABASE_URL, PG* variables, else embedded)")


def load_inputs(scenario: str, strategy: str) -> tuple[scenarios.Scenario, Strategy]:
    from sim.engine import scenario as scenarios

    return scenarios.load(scenario), load_strategy_arg(strategy)


class LiveProgress:
    """One line per finished run on stderr, when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty()

    def __call__(self, run: LiveRun) -> None:
        self.done += 1
        if self.enabled:
            verdict = "not judged" if run.result.error else (
                f"{len(run.result.violations)} violation(s)" if run.result.violations else "clean"
            )
            sys.stderr.write(f"\rlive run {self.done}/{self.total} (seed {run.result.seed}): {verdict}, {run.seconds:.1f} s   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


def run_live_batch(scenario: scenarios.Scenario, strategy: Strategy, args: argparse.Namespace, runs: int) -> LiveBatch:
    """Run the batch; Ctrl-C stops it and keeps the runs that finished (``interrupted``)."""
    from sim.live import stop
    from sim.live.runs import LiveBatch, run_batch

    batch = LiveBatch()
    progress = LiveProgress(runs)
    try:  # Ctrl-C and SIGTERM cancel the batch, which cleans up, then raise KeyboardInterrupt here
        stop.run(
            run_batch(
                scenario, strategy, runs=runs, seed=args.seed, redis_url=args.redis, dsn=args.dsn,
                time_s=getattr(args, "time", None), batch=batch, on_run=progress,
            )
        )
    except KeyboardInterrupt:
        batch.interrupted = True
    finally:
        progress.close()
    return batch


def write_live_results(out: str, runs: list[LiveRun]) -> None:
    """``--out``: the runs' rows as a results file (a sweep's columns, then mode and seconds)."""
    from sim.live.runs import live_row
    from sim.runs.columns import COLUMNS, LIVE_COLUMNS
    from sim.runs.results_file import write_rows

    try:
        write_rows(Path(out), [live_row(run) for run in runs], (*COLUMNS, *LIVE_COLUMNS))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write ({exc.strerror or exc})") from None


def cmd_live(args: argparse.Namespace) -> int:
    from sim.live.runs import live_row

    if args.out and Path(args.out).suffix not in (".parquet", ".csv"):
        raise UsageError(f"--out {args.out}: the file must end in .parquet or .csv")
    scenario, strategy = load_inputs(args.scenario, args.strategy)
    batch = run_live_batch(scenario, strategy, args, args.runs)
    if args.out and batch.runs:  # an interrupted batch keeps its finished runs here too
        write_live_results(args.out, batch.runs)
    if args.json:
        for run in batch.runs:
            print(json.dumps(live_row(run)))
    else:
        print_runs(batch.runs, scenario, strategy)
        if args.out and batch.runs:
            print(f"results: {args.out} ({len(batch.runs)} rows)")
    if batch.interrupted:
        print(f"racetrack: interrupted; {len(batch.runs)} finished run(s) kept", file=sys.stderr)
        return 130
    if batch.error:
        print(f"racetrack: {batch.error}", file=sys.stderr)
        return 2
    unjudged = [r.result.error for r in batch.runs if r.result.error]
    if unjudged:
        print(f"racetrack: {len(unjudged)} run(s) were not judged; first: {unjudged[0]}", file=sys.stderr)
        return 2
    return 1 if any(r.result.violations for r in batch.runs) else 0


def run_verdict(run: LiveRun) -> str:
    """A run's verdict in a few words: a run whose strategy crashed or reached a limit was not
    judged, and is never said to have held (its error is printed under it)."""
    result = run.result
    if result.error:
        return "the run was not judged"
    return f"{len(result.violations)} violation(s)" if result.violations else "all invariants held"


def print_runs(runs: list[LiveRun], scenario: scenarios.Scenario, strategy: Strategy) -> None:
    from sim.judge.timeline import render

    if len(runs) == 1:
        run = runs[0]
        result = run.result
        header = (
            f"racetrack live {scenario.name} --strategy {strategy.name} --seed {result.seed}\n"
            f"{len(result.record.truth)} job(s), {result.ops} database round trip(s), {run.seconds:.3f} s, "
            f"timestamp tolerance {result.record.tolerance_us / 1000:.3f} ms"
        )
        print(render(result.record, result.violations, header))
        print()
    for run in runs:
        result = run.result
        for crash in result.crashes:
            print(f"handler crash: {crash}")
        print(f"seed {result.seed}: {run_verdict(run)} ({run.seconds:.1f} s)")
        if result.error:
            print(f"  {redact(result.error)}")  # a handler's own text may quote a connection string
        for v in result.violations[:5]:
            print(f"  {v.line()}")
        if len(result.violations) > 5:
            print(f"  ... and {len(result.violations) - 5} more")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("live", help="run a scenario on a real BullMQ queue and PostgreSQL and judge it (exit 1 on a violation)")
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--runs", type=positive("--runs", MAX_RUNS), default=1, help="live runs, seeds seed, seed+1, ... (default: 1)")
    p.add_argument("--seed", type=seed, default=0, help="first seed (default: 0)")
    p.add_argument("--time", type=positive_float("--time"), metavar="SECONDS", help="start no new run after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON result row per run (a sweep row plus mode and seconds)")
    p.add_argument("--out", type=output_file("--out"), metavar="FILE",
                   help="also write the rows to FILE.parquet or FILE.csv, a results file 'racetrack report' reads")
    add_server_flags(p)
    p.set_defaults(func=cmd_live)
