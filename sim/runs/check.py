"""The regression gate: judge scenario expectations (``[expect]``) over seeded runs.

A scenario's ``[expect]`` table maps a strategy (built-in name or ``module:attr``) to

* ``"clean"``: no invariant is violated in any run;
* ``"violates:A,B"``: each of A and B is violated in at least one run. The other invariants are
  *not judged*: the expectation pins that a known race is still reproduced, and stays true when
  a strategy also breaks something else (that is reported, as information). To pin those too,
  list them;
* ``"any"``: not judged (the strategy is not run).

A verdict keeps, per invariant, how many runs violated it and the violating run with the fewest
database operations (ties: the lowest seed): the shortest counterexample, printed as the
``racetrack run`` command that replays it. ``junit_xml`` renders verdicts for CI dashboards.

May import: ``sim.judge.invariants`` (IDs), ``sim.engine.scenario``, ``sim.runs.sweep``, ``sim.runs.backends``,
``tracker.strategies``. Prints nothing.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim.engine.limits import DEFAULT_LIMITS, Limits
from sim.engine.scenario import Scenario
from sim.judge.invariants import INVARIANT_IDS
from sim.record import conflicts
from sim.record.conflicts import Saturation
from sim.runs.backends import BackendSpec
from sim.runs.columns import ROW_INVARIANTS
from sim.runs.strategy_source import runnable
from sim.runs.sweep import Execution, Sweep, SweepError, SweepRun
from tracker.strategies import StrategyNotFound, load_strategy


@dataclass(frozen=True)
class Expectation:
    """One ``[expect]`` entry: ``ref`` is how the scenario was named (for the replay command)."""

    ref: str
    scenario: Scenario
    strategy: str
    expect: str

    @property
    def judged(self) -> bool:
        return self.expect != "any"

    @property
    def must_violate(self) -> tuple[str, ...]:
        if not self.expect.startswith("violates:"):
            return ()
        return tuple(i.strip() for i in self.expect[len("violates:") :].split(",") if i.strip())


def expectations(ref: str, scenario: Scenario) -> list[Expectation]:
    return [Expectation(ref, scenario, strategy, expect) for strategy, expect in scenario.expect.items()]


@dataclass(frozen=True)
class ShortestSeed:
    """The violating seed with the fewest database operations (``racetrack run`` replays it)."""

    seed: int
    ops: int


@dataclass(frozen=True)
class Tally:
    """One invariant over one scenario x strategy: runs that violated it, and the shortest one."""

    invariant: str
    violating_runs: int
    shortest: ShortestSeed | None
    unknown_runs: int = 0  # runs whose checker for this invariant crashed


@dataclass
class TallyBuilder:
    """Folds result rows into per-invariant tallies (the rows themselves are not kept)."""

    #: The IDs tallied: the built-in invariants, then the scenario's row invariants (``row:<name>``).
    ids: tuple[str, ...] = INVARIANT_IDS
    runs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shortest: dict[str, ShortestSeed] = field(default_factory=dict)
    #: Runs in which an invariant could not be judged (its checker crashed), per invariant.
    unknown: dict[str, int] = field(default_factory=dict)
    #: Runs that could not finish (a lost server, or the strategy's own code): they judged nothing.
    errors: int = 0
    first_error: str = ""
    #: Of those, runs the strategy's own code stopped (a crash, a limit): the strategy is broken,
    #: so its expectation is neither met nor failed: it is an error (exit 2).
    strategy_errors: int = 0
    first_strategy_error: str = ""
    #: Distinct conflict orders over the runs (how much of the interleavings the sweep saw).
    coverage: Saturation = field(default_factory=Saturation)

    def add(self, row: dict[str, Any]) -> None:
        self.runs += 1
        self.coverage.add([d for d in str(row.get("conflict_orders") or "").split(",") if d])
        if row.get("error"):
            self.errors += 1
            self.first_error = self.first_error or f"seed {row['seed']}: {row['error']}"
            if str(row["error"]).startswith("strategy "):
                self.strategy_errors += 1
                self.first_strategy_error = self.first_strategy_error or self.first_error
        for invariant in filter(None, str(row.get("unknown") or "").split(",")):
            self.unknown[invariant] = self.unknown.get(invariant, 0) + 1
        own = json.loads(row.get(ROW_INVARIANTS) or "{}")
        for invariant in self.ids:
            found = own.get(invariant.removeprefix("row:"), 0) if invariant.startswith("row:") else row[invariant]
            if found:
                self.counts[invariant] = self.counts.get(invariant, 0) + 1
                best = self.shortest.get(invariant)
                if best is None or (row["ops"], row["seed"]) < (best.ops, best.seed):
                    self.shortest[invariant] = ShortestSeed(row["seed"], row["ops"])

    def tallies(self) -> dict[str, Tally]:
        return {i: Tally(i, self.counts.get(i, 0), self.shortest.get(i), self.unknown.get(i, 0)) for i in self.ids}

    def broken(self) -> tuple[str, ...]:
        """The line saying the strategy's own code stopped runs (empty: it did not)."""
        if not self.strategy_errors:
            return ()
        return (f"{self.strategy_errors}/{self.runs} runs were not judged: the strategy's code stopped them; "
                f"first: {self.first_strategy_error}",)

    def unjudged(self) -> tuple[str, ...]:
        """Lines for what these runs could not judge (a ``clean`` verdict cannot rest on them)."""
        lines = [f"{i} could not be judged in {n}/{self.runs} runs (its checker crashed)" for i, n in sorted(self.unknown.items())]
        if self.errors:
            lines.append(f"{self.errors}/{self.runs} runs could not finish; first: {self.first_error}")
        return tuple(lines)


def replay_command(ref: str, strategy: str, seed: int) -> str:
    """The ``racetrack run`` command for one seed, runnable as printed from any directory: a
    scenario file by its absolute path, a user's strategy from the directory it imports from."""
    path = Path(ref)
    if path.suffix == ".toml" and path.is_file():
        ref = str(path.resolve())
    return runnable(f"racetrack run {shlex.quote(ref)} --strategy {shlex.quote(strategy)} --seed {seed}", strategy)


@dataclass(frozen=True)
class Verdict:
    expectation: Expectation
    runs: int
    first_seed: int
    tallies: dict[str, Tally]
    problems: tuple[str, ...]  # one line per broken part of the expectation
    notes: tuple[str, ...]  # what else was seen, not judged
    #: What was searched beyond the sweep (one line per search; empty: the sweep alone).
    searched: tuple[str, ...] = ()
    #: Wall-clock seconds the search took (printed, not in JUnit: the same check, the same file).
    search_seconds: float = 0.0
    #: The sweep's coverage (:meth:`Saturation.to_data`); None when not counted.
    coverage: dict[str, Any] | None = None
    #: Why the strategy could not be judged (its code crashed or reached a limit in a run or in
    #: the search): neither a pass nor a failure, an error (exit 2). Empty: it was judged.
    errors: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems and not self.errors

    @property
    def errored(self) -> bool:
        return bool(self.errors)

    @property
    def skipped(self) -> bool:
        return not self.expectation.judged


def judge_expectation(
    expectation: Expectation, tallies: dict[str, Tally], runs: int, first_seed: int, unjudged: tuple[str, ...] = ()
) -> Verdict:
    """Whether the tallies of ``runs`` seeded runs meet ``expectation`` (its ``[expect]`` entry).

    ``unjudged`` (:meth:`TallyBuilder.unjudged`) names what the runs could not judge: a ``clean``
    expectation fails on it (clean was not shown), a ``violates:`` one only notes it."""
    e = expectation
    problems: list[str] = []
    notes: list[str] = []
    seeds = f"seeds {first_seed}..{first_seed + runs - 1}"
    violated = [t for t in tallies.values() if t.violating_runs]

    def shown(t: Tally) -> str:
        assert t.shortest is not None
        return (
            f"{t.invariant} violated in {t.violating_runs}/{runs} runs; shortest counterexample "
            f"({t.shortest.ops} ops): {replay_command(e.ref, e.strategy, t.shortest.seed)}"
        )

    if e.expect == "clean":
        problems = [shown(t) for t in violated] + list(unjudged)
    elif e.must_violate:
        for invariant in e.must_violate:
            t = tallies[invariant]
            if t.violating_runs == 0:
                problems.append(
                    f"{invariant} violated in 0/{runs} runs ({seeds}): expected at least one; "
                    f"if the race is rarer, try: racetrack check {shlex.quote(e.ref)} --runs {runs * 4}"
                )
            else:
                notes.append(f"{invariant} violated in {t.violating_runs}/{runs} runs")
        for t in violated:
            if t.invariant not in e.must_violate:
                notes.append(f"also (not judged): {t.invariant} {t.violating_runs}/{runs}")
        notes.extend(unjudged)
    return Verdict(e, runs, first_seed, tallies, tuple(problems), tuple(notes))


def skipped(expectation: Expectation) -> Verdict:
    return Verdict(expectation, 0, 0, {}, (), ("not judged (expect = \"any\")",))


def verdict_lines(v: Verdict) -> list[str]:
    e = v.expectation
    status = "SKIP" if v.skipped else "ERROR" if v.errored else ("PASS" if v.passed else "FAIL")
    head = f"{status}  {e.scenario.name}  {e.strategy} = \"{e.expect}\""
    if not v.skipped:
        head += f"  ({v.runs} runs{' + search' if v.searched else ''})"
    searched = [f"      searched: {s}" for s in v.searched]
    if searched:
        searched[-1] += f"; {v.search_seconds:.2f} s"
    if v.coverage is not None and not v.skipped:
        searched.insert(0, f"      sweep coverage: {conflicts.sentence(v.coverage)}")
    return [head] + [f"      {x}" for x in v.errors] + [f"      {p}" for p in v.problems] + [f"      {n}" for n in v.notes] + searched


def junit_xml(verdicts: Iterable[Verdict]) -> bytes:
    """JUnit XML: one testsuite per scenario, one testcase per scenario x strategy. No timings,
    so the same check gives the same file."""
    verdicts = list(verdicts)
    root = ET.Element("testsuites", name="racetrack check")
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for v in verdicts:
        e = v.expectation
        suite = suites.get(e.scenario.name)
        if suite is None:
            suite = suites[e.scenario.name] = ET.SubElement(root, "testsuite", name=e.scenario.name)
            suite.attrib.update({"tests": "0", "failures": "0", "errors": "0", "skipped": "0"})
        case = ET.SubElement(suite, "testcase", classname=f"racetrack.{e.scenario.name}", name=f"{e.strategy}: {e.expect}")
        counts = ["tests"]
        if v.skipped:
            ET.SubElement(case, "skipped", message="expect = \"any\": not judged")
            counts.append("skipped")
        elif v.errored:
            error = ET.SubElement(case, "error", message=v.errors[0], type="StrategyNotJudged")
            error.text = "\n".join(v.errors)
            counts.append("errors")
        elif not v.passed:
            failure = ET.SubElement(case, "failure", message=v.problems[0], type="ExpectationFailed")
            failure.text = "\n".join(v.problems)
            counts.append("failures")
        if v.searched or v.coverage is not None:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="runs", value=str(v.runs))
            if v.coverage is not None:
                ET.SubElement(props, "property", name="coverage", value=conflicts.sentence(v.coverage))
            for line in v.searched:
                ET.SubElement(props, "property", name="searched", value=line)
        if (v.notes or v.searched) and not v.skipped:
            ET.SubElement(case, "system-out").text = "\n".join([*v.notes, *(f"searched: {s}" for s in v.searched)])
        for key in counts:
            suite.attrib[key] = str(int(suite.attrib[key]) + 1)
            totals[key] += 1
    # the total of errors only when there are some: a check without one writes the file it always did
    root.attrib.update({k: str(n) for k, n in totals.items() if k != "errors" or n})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def check_scenario(
    ref: str,
    scenario: Scenario,
    runs: int,
    seed: int = 0,
    execution: Execution | None = None,
    backend: BackendSpec | None = None,
    on_rows: Callable[[int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Verdict]:
    """Run every judged strategy of ``scenario``'s ``[expect]`` on the same seeds and judge it.
    Raises :class:`~sim.runs.sweep.SweepError` (one line) for a strategy that cannot be loaded."""
    wanted = expectations(ref, scenario)
    judged = [e for e in wanted if e.judged]
    for e in wanted:  # "any" ones too: a misspelt name must not pass as skipped
        try:
            load_strategy(e.strategy)
        except StrategyNotFound as exc:
            raise SweepError(f"{scenario.source}: [expect] {e.strategy}: {exc}") from None
    ids = INVARIANT_IDS + tuple(r.id for r in scenario.lifecycle.rows)
    builders = [TallyBuilder(ids) for _ in judged]
    if judged:
        sweep = Sweep((scenario,), tuple(e.strategy for e in judged), runs, seed, backend or BackendSpec(), limits)
        with SweepRun(sweep, execution or Execution(), on_rows=on_rows) as run:
            for position, row in enumerate(run.rows()):
                builders[position // runs].add(row)  # plan order: strategy by strategy
    verdicts = {
        e.strategy: replace(judge_expectation(e, b.tallies(), runs, seed, b.unjudged()), coverage=b.coverage.to_data(),
                            errors=b.broken())
        for e, b in zip(judged, builders, strict=True)
    }
    return [verdicts[e.strategy] if e.judged else skipped(e) for e in wanted]
