"""What the commands print beyond one run's timeline: the progress bar, and the sweep's account
of what it ran, its table and its verdict per scenario.

Everything here is text for a person; ``--json`` output is built by the commands themselves and
does not pass through this module. Also the check every command that writes a file makes before
it runs: no output onto one of its inputs (:func:`refuse_overwriting`); the files themselves are
written by ``sim.runs.results_file.write_output_file``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tracker.errors import UserError

#: The sweep table's column heading for each invariant: a word of its ID, short enough that the
#: whole table fits in 120 columns (``racetrack invariants`` lists the IDs with what they mean).
INVARIANT_COLUMNS = {
    "no-rejected-writes": "rejected",
    "ordered-timestamps": "ordered",
    "terminal-status": "terminal",
    "monotonic-status": "monotonic",
    "first-start-kept": "first-start",
    "faithful-timestamps": "faithful",
    "accurate-attempts": "attempts",
}

#: How the sweep's first line names each backend (``--backend``).
BACKEND_NAMES = {
    "memory": "the memory model",
    "postgres": "PostgreSQL",
    "both": "the memory model and PostgreSQL (differential)",
}


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


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def sweep_heading(scenarios: int, strategies: int, runs: int, seed: int, backend: str) -> str:
    """The sweep's first line: on which backend, what ran, on which seeds."""
    return (
        f"racetrack sweep on {BACKEND_NAMES.get(backend, backend)}: {_count(scenarios, 'scenario', 'scenarios')} x "
        f"{_count(strategies, 'strategy', 'strategies')}, {_count(runs, 'run', 'runs')} each (seeds {seed}..{seed + runs - 1})"
    )


def format_summary(summary: list[dict[str, Any]]) -> str:
    """The sweep table: per scenario and strategy, runs, runs with any violation, and the
    violations of each invariant."""
    from sim.judge.invariants import INVARIANT_IDS

    name_w = max([len("scenario"), *(len(e["scenario"]) for e in summary)])
    strategy_w = max([len("strategy"), *(len(e["strategy"]) for e in summary)])
    widths = {i: max(len(INVARIANT_COLUMNS[i]), 5) for i in INVARIANT_IDS}
    lead = f"{'scenario':<{name_w}} {'strategy':<{strategy_w}} {'runs':>6} {'violating':>10}"
    head = lead + "".join(f" {INVARIANT_COLUMNS[i]:>{widths[i]}}" for i in INVARIANT_IDS)
    span = len(head) - len(lead) - 1
    group = " " * (len(lead) + 1) + " violations of each invariant ".center(span, "-")
    lines = [group, head, "-" * len(head)]
    for e in summary:
        lines.append(
            f"{e['scenario']:<{name_w}} {e['strategy']:<{strategy_w}} {e['runs']:>6} {e['violating_runs']:>10}"
            + "".join(f" {e['violations'][i]:>{widths[i]}}" for i in INVARIANT_IDS)
        )
    return "\n".join(lines)


def verdict_lines(summary: list[dict[str, Any]], errors: dict[tuple[str, str], int]) -> list[str]:
    """One line per scenario: the strategies that held in every run, those that broke and in how
    many runs, and those with runs that could not finish (``errors`` per (scenario, strategy)) or
    an invariant that could not be judged: neither is counted as held."""
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for e in summary:
        by_scenario.setdefault(e["scenario"], []).append(e)
    width = max((len(name) for name in by_scenario), default=0) + 1
    lines = []
    for name, entries in by_scenario.items():
        held = [e["strategy"] for e in entries
                if not e["violating_runs"] and not errors.get((name, e["strategy"])) and not e.get("unknown")]
        broke = [f"{e['strategy']} {e['violating_runs']}/{e['runs']}" for e in entries if e["violating_runs"]]
        failed = [f"{e['strategy']} {n}/{e['runs']}" for e in entries if (n := errors.get((name, e["strategy"]), 0))]
        parts = []
        if held:
            parts.append("held: " + ", ".join(held))
        if broke:
            parts.append("broke: " + ", ".join([broke[0] + " runs", *broke[1:]]))
        if failed:
            parts.append("could not finish: " + ", ".join([failed[0] + " runs", *failed[1:]]))
        unjudged = [f"{e['strategy']} {e['unknown']}" for e in entries if e.get("unknown")]
        if unjudged:
            parts.append("an invariant's checker crashed (unknown): " + ", ".join([unjudged[0] + " time(s)", *unjudged[1:]]))
        lines.append(f"{name + ':':<{width}} " + "; ".join(parts))
    return lines


def differential_line(count: int, first: Sequence[str]) -> str:
    if not count:
        return "differential: memory and PostgreSQL agreed on every operation and the final rows"
    return f"differential: {count} disagreement(s); first: {first[0]}"


def backend_lines(summary: list[dict[str, Any]], errors: int, out: Path | None = None, first: str = "") -> list[str]:
    """Runs that could not finish (and the first one's error), and the differential verdict,
    under the verdicts."""
    lines = []
    if errors:
        where = f"the 'error' column of {out}" if out is not None else "rerun with --out FILE.parquet for each run's error"
        lines.append(f"errors: {errors} run(s) could not finish ({where})" + (f"; first: {first}" if first else ""))
    compared = [e for e in summary if "disagreements" in e]
    if compared:
        count = sum(e["disagreements"] for e in compared)
        firsts = [f"{e['scenario']} {e['strategy']} {e['first_disagreement']}" for e in compared if e.get("first_disagreement")]
        lines.append(differential_line(count, firsts[:1]))
    return lines


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode when both exist (a link, another
    spelling), else the same resolved path (a file about to be written)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(outputs: Iterable[tuple[str, str | Path]], inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse, in one line, an output (``(flag, path)``) that is one of the command's inputs
    (``(what, path)``) or another of its outputs: writing it would destroy what the command
    reads, or one output would silently replace the other. Every command that writes a file
    checks this before it runs anything (``explore``, ``export``, ``check``, ``sweep``)."""
    outputs, inputs = list(outputs), list(inputs)
    for i, (flag, path) in enumerate(outputs):
        for what, source in inputs:
            if same_file(path, source):
                raise UserError(f"{flag} {path}: is the {what} this command reads; name another file")
        for other, other_path in outputs[:i]:
            if same_file(path, other_path):
                raise UserError(f"{flag} {path}: is also the {other} file; name two different files")


def scenario_inputs(argument: str, scenario: Any, bundled: Path, table_sql: str | None = None) -> list[tuple[str, Path]]:
    """The files a command reads for the scenario ``argument`` names (``scenario`` loaded from
    it; ``bundled``: where bundled scenarios live): the scenario file, and its table's SQL
    (``--table-sql``'s file when given, else the scenario's ``table.sql``, relative to the file)."""
    path = Path(argument)
    scenario_file = path if path.is_file() else bundled / f"{argument}.toml"
    files = [("scenario file", scenario_file)]
    if table_sql:
        files.append(("table SQL file", Path(table_sql)))
    elif scenario["table.sql"]:
        files.append(("table SQL file", scenario_file.parent / scenario["table.sql"]))
    return files


def strategy_inputs(refs: Iterable[str]) -> list[tuple[str, Path]]:
    """The files of the user's strategies (``module:attr``) among ``refs`` that can be loaded
    (one that cannot is reported where it is run)."""
    from sim.runs.strategy_source import origin

    files = []
    for ref in refs:
        try:
            where = origin(ref)
        except Exception:  # not importable: the command says so when it runs it
            continue
        if where is not None:
            files.append(("strategy file", Path(where.file)))
    return files
