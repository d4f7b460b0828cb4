"""Searching for counterexamples: random seeds, Hypothesis, exhaustive interleavings, PCT.

Every method ends the same way: a :class:`Counterexample` is a forced-order run
(:mod:`sim.engine.ordered`) of a :class:`~sim.engine.ordered.Case` that violates an invariant, with the schedule
that makes it, ready to be written as a trace and replayed.

* ``random``: seeds ``seed, seed+1, ...`` of the SimPy world; the first violating run is reduced
  to the fewest jobs that still violate (a prefix of the jobs, then the violating job alone).
* ``hypothesis``: Hypothesis draws the scenario's structure (jobs, attempts, workers) and every
  timing choice of the world (arrivals, durations, failures, clock offsets and drifts, each
  operation's latency) through :class:`DrawnDraws`; Hypothesis' engine finds, shrinks and stores
  the counterexample (its example database), no shrinker of ours.
* ``exhaustive``: every order of one case's database operations that keeps each actor's own
  order (and the awaited insert first), by depth-first search over choice points: handlers branch
  on what they read, so the orders are found by running, not by permuting a fixed list.
* ``pct``: Burckhardt et al.'s probabilistic concurrency testing (ASPLOS 2010): random actor
  priorities with ``depth - 1`` priority change points; a bug of depth ``d`` among ``n`` actors
  and ``k`` operations is found by one run with probability at least ``1/(n k^(d-1))``. That
  bound holds for one world (one seed's arrivals, durations, clocks and latencies) and for bugs
  some order within the window reaches: PCT splits its budget over several worlds and, unless a
  depth is given, deepens (1, 2, 3, ...), and reports the bound per depth it covered.

Randomness comes from seeds (``random.Random``) and Hypothesis' seeded engine; ``seconds`` and
``--time`` budgets read the wall clock, simulated time never does.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sim.engine import limits
from sim.engine.distributions import Dist, SignedRange
from sim.engine.interpreter import actor_of, user_frame
from sim.engine.limits import LimitExceeded, StrategyFailed, wall_clock_limit
from sim.engine.ordered import (
    Case,
    FirstReady,
    FollowPrefix,
    FollowSchedule,
    OrderedRun,
    require_modelled,
    run_ordered,
    schedule_of,
)
from sim.engine.scenario import Scenario
from sim.engine.world import Draws, World, case_from_world
from sim.judge.invariants import Violation, judge
from sim.record.conflicts import Saturation
from sim.record.history import RunRecord
from sim.runs.backends import BackendSpec, close_backend, open_backend
from tracker.backend import TrackerBackend
from tracker.errors import UserError
from tracker.memory import MemoryTracker
from tracker.strategies import Strategy

METHODS = ("portfolio", "random", "hypothesis", "exhaustive", "pct")
#: How long PCT may hold an operation back behind the earliest ready one (a bound on asynchrony).
DEFAULT_WINDOW_MS = 100.0
DEFAULT_BUDGET = {"portfolio": 1000, "random": 1000, "hypothesis": 1000, "exhaustive": 10_000, "pct": 1000}
#: The default search: each method in turn, with its share of the budget (runs or seconds).
#: Random seeds are cheap and find common races; exhaustive settles small one-job worlds; PCT
#: reaches deep orders in many-job worlds; Hypothesis varies the world's structure and shrinks.
PORTFOLIO = (("random", 0.2), ("exhaustive", 0.15), ("pct", 0.45), ("hypothesis", 0.2))


class ExploreError(UserError, ValueError):
    """A search that cannot be done as asked (e.g. too many interleavings); one line for the user."""


class TooManyOrders(ExploreError):
    """Exhaustive search over more interleavings than allowed; ``size`` says how many (the
    message's advice names ``explore``'s options, which a portfolio's own note leaves out)."""

    def __init__(self, message: str, size: str) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class Counterexample:
    case: Case
    run: OrderedRun
    violations: tuple[Violation, ...]

    @property
    def ops(self) -> int:
        return self.run.ops

    @property
    def jobs(self) -> int:
        return len(self.case.truth)


@dataclass(frozen=True)
class Exploration:
    method: str
    found: Counterexample | None
    explored: dict[str, Any] = field(hash=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class Focus:
    """Which invariants count as a counterexample (empty: every one)."""

    invariants: tuple[str, ...] = ()

    def hits(self, record: RunRecord) -> list[Violation]:
        return [v for v in judge(record).violations if not self.invariants or v.invariant in self.invariants]


ALL = Focus()


def _keys(violations: list[Violation] | tuple[Violation, ...]) -> set[tuple[str, str]]:
    return {(v.invariant, v.job) for v in violations}


def replay_case(case: Case, strategy: Strategy, schedule: list[str] | tuple[str, ...], backend: TrackerBackend) -> OrderedRun:
    return run_ordered(case, strategy, backend, FollowSchedule(list(schedule)))


def reduce_to_job(
    case: Case, run: OrderedRun, strategy: Strategy, backend: TrackerBackend, focus: Focus = ALL
) -> tuple[Case, OrderedRun]:
    """The first violated job alone, when it still violates the same way without the others
    (each job's handlers touch only its row; the others only pushed time around)."""
    violations = focus.hits(run.record)
    if len(case.truth) <= 1 or not violations:
        return case, run
    job = violations[0].job
    small = case.only_job(job)
    names = {a.name for a in small.actors}
    small_run = replay_case(small, strategy, [n for n in run.schedule if actor_of(n) in names], backend)
    wanted = {k for k in _keys(violations) if k[1] == job}
    if wanted and wanted <= _keys(focus.hits(small_run.record)):
        return small, small_run
    return case, run


def _simulate(scenario: Scenario, strategy: Strategy, seed: int, draws: Draws | None = None) -> tuple[World, RunRecord]:
    world = World(scenario, strategy, MemoryTracker(scenario.table), seed, draws, limits.current())
    try:
        with wall_clock_limit(limits.current().wall_seconds, f"seed {seed} of {scenario.name} with {strategy.name}"):
            record = world.run()
    except LimitExceeded as exc:
        where = user_frame(exc)
        raise StrategyFailed(f"strategy {strategy.name}: {exc}" + (f"; it was running {where}" if where else "")) from None
    if world.driver.failure:
        raise StrategyFailed(f"strategy {strategy.name}: {world.driver.failure} (the run was not judged)")
    return world, record


def _as_counterexample(
    world: World, record: RunRecord, scenario: Scenario, strategy: Strategy, seed: int, backend: TrackerBackend,
    focus: Focus,
) -> Counterexample | None:
    """A violating SimPy run as a replayable forced-order run, reduced to its violating job
    (``None`` in the unexpected case that following its arrival order does not reproduce it)."""
    case = case_from_world(world, record, scenario, seed)
    run = replay_case(case, strategy, schedule_of(record), backend)
    if not focus.hits(run.record):
        return None
    case, run = reduce_to_job(case, run, strategy, backend, focus)
    return Counterexample(case, run, judge(run.record).violations)


class _Budget:
    """Runs or wall-clock seconds, whichever was asked."""

    def __init__(self, runs: int | None, seconds: float | None) -> None:
        self.runs, self.seconds = runs, seconds
        self.started = time.perf_counter()  # wall-clock ok: the --time budget

    def left(self, done: int) -> bool:
        if self.seconds is not None:
            return time.perf_counter() - self.started < self.seconds  # wall-clock ok: the --time budget
        return done < (self.runs or 0)

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 3)  # wall-clock ok: reported seconds


# --- random ------------------------------------------------------------------------------------


def explore_random(
    scenario: Scenario, strategy: Strategy, seed: int, budget: _Budget, backend: TrackerBackend, focus: Focus = ALL,
    coverage: Saturation | None = None,
) -> Exploration:
    coverage = coverage if coverage is not None else Saturation()
    runs = 0
    while budget.left(runs):
        run_seed = seed + runs
        world, record = _simulate(scenario, strategy, run_seed)
        runs += 1
        coverage.add_record(record)
        if not focus.hits(record):
            continue
        # Fewest jobs first: job streams are per job, so a prefix of the jobs is the same world.
        for count in range(1, scenario["job.count"] + 1):
            smaller = scenario.with_values({"job.count": count})
            w, r = _simulate(smaller, strategy, run_seed)
            if focus.hits(r):
                ce = _as_counterexample(w, r, smaller, strategy, run_seed, backend, focus)
                if ce is not None:
                    return Exploration("random", ce, {"runs": runs, "seed": run_seed, "coverage": coverage.to_data()},
                                       budget.elapsed())
    return Exploration("random", None, {"runs": runs, "coverage": coverage.to_data()}, budget.elapsed())


# --- Hypothesis --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _integers(lo: int, hi: int) -> Any:
    """Hypothesis' ``integers(lo, hi)``, built once per range (building one is not free)."""
    from hypothesis import strategies as st

    return st.integers(lo, hi)


class DrawnDraws(Draws):
    """Every choice of the world drawn by Hypothesis, so its shrinker minimizes timing too.

    Durations and latencies are whole microseconds, shrinking towards 0; a log-normal's search
    range is ``[0, 2 x p99]``; chances are booleans (shrinking to "no") unless the scenario makes
    them certain or impossible; clock offsets and drifts shrink towards 0.
    """

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        super().__init__("hypothesis")
        self._draw = draw
        #: What a draw raised (Hypothesis stops a test case by raising inside ``draw``); SimPy
        #: re-raises a copy, which Hypothesis would not recognise: the original is kept here.
        self.stopped: BaseException | None = None

    def draw(self, strategy: Any) -> Any:
        try:
            return self._draw(strategy)
        except BaseException as exc:
            self.stopped = exc
            raise

    def _ms(self, dist: Dist) -> float:
        if dist.kind == "fixed":
            return dist.a
        lo, hi = (dist.a, dist.b) if dist.kind == "uniform" else (0.0, 2 * dist.b)
        return lo + self.draw(_integers(0, round((hi - lo) * 1000))) / 1000

    def interarrival_ms(self, dist: Dist) -> float:
        return self._ms(dist)

    def job_ms(self, job: int, what: str, dist: Dist) -> float:
        return self._ms(dist)

    def job_chance(self, job: int, what: str, p: float) -> bool:
        from hypothesis import strategies as st

        if p <= 0 or p >= 1:
            return p >= 1
        return bool(self.draw(st.booleans()))

    def job_uniform(self, job: int, what: str, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.draw(_integers(0, 1000)) / 1000

    def clock(self, host: str, max_offset_ms: float, max_drift_ppm: float) -> tuple[float, float]:
        offset = self.draw(_integers(-round(max_offset_ms * 1000), round(max_offset_ms * 1000))) / 1000
        drift = float(self.draw(_integers(-round(max_drift_ppm), round(max_drift_ppm))))
        return offset, drift

    def host_clock(self, host: str, offset: SignedRange, drift: SignedRange) -> tuple[float, float]:
        drawn_offset = self.draw(_integers(round(offset.lo * 1000), round(offset.hi * 1000))) / 1000
        return drawn_offset, float(self.draw(_integers(round(drift.lo), round(drift.hi))))

    def one_way_ms(self, actor: str, rtt: Dist) -> float:
        return self._ms(rtt) / 2


@dataclass(frozen=True)
class _Drawn:
    scenario: Scenario
    world: World
    record: RunRecord
    violations: tuple[Violation, ...]

    def __repr__(self) -> str:  # Hypothesis may print it: keep it short
        return f"<run: {self.scenario['job.count']} job(s), {len(self.violations)} violation(s)>"


@contextlib.contextmanager
def _hypothesis_home_apart() -> Iterator[None]:
    """Hypothesis keeps a cache of the constants it finds in source files under its home
    directory, ``./.hypothesis`` by default: a search would leave that folder in the user's
    current directory, whatever ``--database`` says (the example database is named apart). While
    Hypothesis runs here its home is a temporary folder, removed afterwards; the cache only
    saves recomputing the same constants, so what Hypothesis draws is the same."""
    import shutil
    import tempfile

    from hypothesis import configuration

    previous = getattr(configuration, "__hypothesis_home_directory", None)
    home = tempfile.mkdtemp(prefix="racetrack-hypothesis-")
    configuration.set_hypothesis_home_dir(home)
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(previous)
        shutil.rmtree(home, ignore_errors=True)


def _find(strategy: Any, conf: Any, rng: random.Random, key: bytes, with_database: bool) -> Any:
    """Hypothesis' ``find``: the minimal drawn run that violates, seeded by ``rng``."""
    from hypothesis import core as hypothesis_core
    from hypothesis import find
    from hypothesis.errors import HypothesisWarning

    with warnings.catch_warnings(), _hypothesis_home_apart():
        # Reporting the final example makes Hypothesis repr every draw: a warning, not news.
        warnings.simplefilter("ignore", HypothesisWarning)
        if not with_database:
            return find(strategy, lambda d: bool(d.violations), settings=conf, random=rng, database_key=key)
        # Hypothesis' seed() turns its database off; its pytest plugin's --hypothesis-seed (this
        # global) fixes generation and keeps the database: saved examples run first.
        previous = hypothesis_core.global_force_seed
        hypothesis_core.global_force_seed = rng.getrandbits(64)  # type: ignore[assignment]
        try:
            return find(strategy, lambda d: bool(d.violations), settings=conf, database_key=key)
        finally:
            hypothesis_core.global_force_seed = previous


def explore_hypothesis(
    scenario: Scenario, strategy: Strategy, seed: int, budget: _Budget, backend: TrackerBackend,
    database: str | None = None,
    focus: Focus = ALL,
    coverage: Saturation | None = None,
) -> Exploration:
    from hypothesis import Phase, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase
    from hypothesis.errors import NoSuchExample

    counts = {"runs": 0, "to_first": 0}
    cover = coverage if coverage is not None else Saturation()

    @st.composite
    def runs(draw: Callable[[Any], Any]) -> _Drawn:
        changes = {
            "job.count": draw(st.integers(1, scenario["job.count"])),
            "job.attempts": draw(st.integers(1, scenario["job.attempts"])),
            "workers.count": draw(st.integers(1, scenario["workers.count"])),
        }
        sc = scenario.with_values(changes)
        draws = DrawnDraws(draw)
        try:
            world, record = _simulate(sc, strategy, seed, draws)
        except BaseException:
            if draws.stopped is not None:
                raise draws.stopped from None
            raise
        violations = tuple(focus.hits(record))
        counts["runs"] += 1
        cover.add_record(record)
        if violations and not counts["to_first"]:
            counts["to_first"] = counts["runs"]
        return _Drawn(sc, world, record, violations)

    db = DirectoryBasedExampleDatabase(database) if database else None
    key = f"racetrack:{scenario.name}:{sorted(scenario.to_toml_table().items())}:{strategy.name}:{seed}".encode()
    found: _Drawn | None = None
    chunk = 0
    while found is None and budget.left(counts["runs"]):
        # One search for a run budget; under --time, seeded searches of 100 examples in a row.
        examples = (budget.runs or 0) if budget.seconds is None else 100
        conf = settings(
            database=db, max_examples=max(1, examples), deadline=None, derandomize=False,
            phases=(Phase.reuse, Phase.generate, Phase.shrink), print_blob=False,
        )
        rng = random.Random(f"racetrack:{seed}:hypothesis:{chunk}")
        try:
            found = _find(runs(), conf, rng, key, db is not None)
        except NoSuchExample:
            chunk += 1
            if budget.seconds is None:
                break
    explored: dict[str, Any] = {"runs": counts["runs"], "runs_to_first": counts["to_first"] or None,
                                "coverage": cover.to_data()}
    if found is None:
        return Exploration("hypothesis", None, explored, budget.elapsed())
    explored["shrink_runs"] = counts["runs"] - counts["to_first"]
    ce = _as_counterexample(found.world, found.record, found.scenario, strategy, seed, backend, focus)
    if ce is None:
        explored["not_replayable"] = True
    return Exploration("hypothesis", ce, explored, budget.elapsed())


# --- exhaustive --------------------------------------------------------------------------------


def count_orders(ops: list[int], after: list[list[int]], limit_states: int = 200_000) -> tuple[int, bool]:
    """How many orders of the actors' operations keep each actor's order and start an actor only
    after those in its ``after`` list finished: ``(count, exact)``. Exact by dynamic programming
    over progress vectors when those are few; otherwise the multinomial bound (``exact=False``)."""
    states = math.prod(c + 1 for c in ops)
    if states > limit_states:
        total = math.factorial(sum(ops))
        for c in ops:
            total //= math.factorial(c)
        return total, False
    memo: dict[tuple[int, ...], int] = {}

    def orders(progress: tuple[int, ...]) -> int:
        if progress in memo:
            return memo[progress]
        total, moved = 0, False
        for i, c in enumerate(ops):
            if progress[i] < c and all(progress[j] == ops[j] for j in after[i]):
                moved = True
                total += orders(progress[:i] + (progress[i] + 1,) + progress[i + 1 :])
        memo[progress] = total if moved else 1
        return memo[progress]

    return orders(tuple(0 for _ in ops)), True


class _RandomChoice:
    """A uniformly random ready actor at each step (to sample orders for an estimate)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, ready: tuple[str, ...], position: int) -> str:
        return self.rng.choice(ready)


#: Orders sampled (besides the first-ready one) to estimate how many operations each actor makes.
ESTIMATE_SAMPLES = 8


def interleaving_estimate(
    case: Case, strategy: Strategy, backend: TrackerBackend, window_us: int | None = None
) -> tuple[int, bool, int]:
    """Orders of the database operations of one case: (count, exact, ops). Handlers branch on
    what they read, so each actor's operation count is the most seen over the first-ready order
    and :data:`ESTIMATE_SAMPLES` random ones; ``exact`` is False when that count is a bound."""
    names = [a.name for a in case.actors if strategy.handler(a.event) is not None]
    ops = [0] * len(names)
    runs = [run_ordered(case, strategy, backend, FirstReady(), window_us)]
    runs += [run_ordered(case, strategy, backend, _RandomChoice(random.Random(f"racetrack:estimate:{i}")), window_us)
             for i in range(ESTIMATE_SAMPLES)]
    # A Parallel's statements count as their handler's: a bound, as they may also swap.
    schedules = [[actor_of(n) for n in run.schedule] for run in runs]
    for schedule in schedules:
        ops = [max(c, schedule.count(n)) for c, n in zip(ops, names, strict=True)]
    index = {n: i for i, n in enumerate(names)}
    after = [[index[d] for d in a.after if d in index] for a in case.actors if a.name in index]
    count, exact = count_orders(ops, after)
    varied = any(s.count(n) != schedules[0].count(n) for s in schedules for n in names)
    parallel = any(actor_of(n) != n for run in runs for n in run.schedule)
    return count, exact and not varied and not parallel, sum(ops)


#: Worlds exhaustive search visits at most by default (each is a SimPy run and an estimate).
EXHAUSTIVE_WORLDS = 20


def explore_exhaustive(
    case: Case, strategy: Strategy, limit: int, backend: TrackerBackend, focus: Focus = ALL,
    window_us: int | None = None, more_worlds: Callable[[int], Case] | None = None, worlds: int = 1,
    coverage: Saturation | None = None,
) -> Exploration:
    """Every order of ``case`` (the world ``--seed`` fixes), then of the worlds ``more_worlds``
    draws (``seed+1``, ...), up to ``worlds`` in all, while ``limit`` interleavings last."""
    started = time.perf_counter()  # wall-clock ok: reported seconds
    coverage = coverage if coverage is not None else Saturation()
    estimate, exact, ops = interleaving_estimate(case, strategy, backend, window_us)
    jobs = len(case.truth)
    if estimate > limit:
        size = f"{estimate:,}" if estimate < 10**9 else f"{estimate:.2e}"
        if jobs > 1:
            fix = f"use --jobs 1 (it has {jobs} jobs), a smaller scenario, a --window, or raise --budget to {size}"
        elif window_us is None:
            fix = f"it has one job already: bound the hold-back with --window, use --method pct, or raise --budget to {size}"
        else:
            fix = f"it has one job and a {window_us / 1000:g} ms window already: use --method pct or raise --budget to {size}"
        said = f"exhaustive: {case.scenario} with {jobs} job(s) has {'' if exact else 'up to '}{size} interleavings of {ops} database operations"
        raise TooManyOrders(f"{said}, more than the --budget limit {limit:,}; {fix}", said)
    ran = 0
    violating = 0
    by_invariant: dict[str, int] = {}
    outcomes: set[str] = set()
    best: tuple[Case, OrderedRun] | None = None
    examples: list[str] = []
    complete_worlds = 0
    visited = 0
    seeds = [case.seed, case.seed]
    stopped = ""
    estimates = 0
    while True:
        visited += 1
        seeds[1] = case.seed
        estimates += estimate
        prefix: list[str] = []
        world_ran = 0
        while True:
            run = run_ordered(case, strategy, backend, FollowPrefix(prefix), window_us)
            ran += 1
            world_ran += 1
            coverage.add_record(run.record)
            violations = focus.hits(run.record)
            outcomes.add(repr(sorted(run.record.rows.items())) + repr(sorted(_keys(violations))))
            if violations:
                violating += 1
                for inv in sorted({v.invariant for v in violations}):
                    by_invariant[inv] = by_invariant.get(inv, 0) + 1
                if best is None or (best[0] is case and run.ops < best[1].ops):
                    best = (case, run)
                if len(examples) < 10:
                    examples.append(f"{' '.join(_short(n) for n in run.schedule)}: {', '.join(sorted({v.invariant for v in violations}))}")
            # Backtrack: the deepest choice point with an actor not tried yet.
            i = len(run.schedule) - 1
            while i >= 0:
                ready = run.choices[i]
                j = ready.index(run.schedule[i])
                if j + 1 < len(ready):
                    prefix = list(run.schedule[:i]) + [ready[j + 1]]
                    break
                i -= 1
            if i < 0:
                complete_worlds += 1
                break
            if ran >= limit:
                stopped = "budget"
                break
        if best is not None or stopped or more_worlds is None or visited >= worlds:
            break
        case = more_worlds(visited)
        estimate, exact_next, _ = interleaving_estimate(case, strategy, backend, window_us)
        exact = exact and exact_next
        if estimate > limit - ran:
            stopped = f"world seed {case.seed} has {estimate:,} interleavings, more than the {limit - ran:,} left"
            break
    complete = complete_worlds == visited
    explored = {
        # Once every branch ran, the count is exact; before, the estimate from sampled runs.
        "interleavings": ran if complete else estimates, "estimate": estimates, "estimate_exact": exact,
        "ran": ran, "complete": complete, "worlds": visited, "worlds_complete": complete_worlds,
        "world_seeds": seeds, "stopped": stopped or None,
        "violating": violating, "by_invariant": by_invariant, "distinct_outcomes": len(outcomes),
        "examples": examples, "window_ms": None if window_us is None else window_us / 1000,
        "coverage": coverage.to_data(),
    }
    seconds = round(time.perf_counter() - started, 3)  # wall-clock ok: reported seconds
    if best is None:
        return Exploration("exhaustive", None, explored, seconds)
    found_case, found_run = best
    return Exploration("exhaustive", Counterexample(found_case, found_run, tuple(found_run.violations())), explored, seconds)


def _short(actor: str) -> str:
    """``job-1.completed#1`` -> ``completed#1`` in one-job listings."""
    return actor.split(".", 1)[-1]


# --- PCT ---------------------------------------------------------------------------------------


class PctScheduler:
    """PCT: distinct random priorities ``d..d+n-1``; at each of ``d-1`` random change points the
    actor about to run drops to priority ``d-1-i``; the highest-priority ready actor runs."""

    def __init__(self, rng: random.Random, actors: list[str], steps: int, depth: int) -> None:
        values = list(range(depth, depth + len(actors)))
        rng.shuffle(values)
        self.priority = dict(zip(actors, values, strict=True))
        points = rng.sample(range(max(steps, depth - 1)), depth - 1)
        self.change = {p: depth - 1 - i for i, p in enumerate(sorted(points))}

    def choose(self, ready: tuple[str, ...], position: int) -> str:
        for n in ready:  # a Parallel statement the recorded run did not send: its handler's priority
            if n not in self.priority:
                self.priority[n] = self.priority[actor_of(n)]
        top = max(ready, key=lambda n: self.priority[n])
        if position in self.change:
            self.priority[top] = self.change[position]  # below every initial priority (>= depth)
            top = max(ready, key=lambda n: self.priority[n])
        return top


def pct_bound(actors: int, steps: int, depth: int) -> float:
    """PCT's guarantee for one run: ``1 / (n * k^(d-1))``."""
    return 1.0 / (max(actors, 1) * max(steps, 1) ** (depth - 1))


#: Runs one world gets before PCT draws the next (under a run budget: the budget split evenly).
PCT_RUNS_PER_WORLD = 250
#: A depth counts as covered in a world once its guarantee there reaches this.
PCT_TARGET = 0.95
PCT_MAX_DEPTH = 8
#: The share of worlds a bug is assumed to occur in for the guarantee across worlds.
WORLD_SHARE = 0.1


@dataclass
class _PctWorld:
    """One world PCT searches: its case, its size, and the runs it had at each depth."""

    seed: int
    case: Case
    names: list[str]
    steps: int
    runs_by_depth: dict[int, int] = field(default_factory=dict)

    def bound(self, depth: int) -> float:
        """Probability that this world's runs at ``depth`` found a depth-``depth`` bug it has."""
        p = pct_bound(len(self.names), self.steps, depth)
        return 1 - (1 - p) ** self.runs_by_depth.get(depth, 0)

    def next_depth(self, run: int) -> int:
        """Deepening: the shallowest depth not yet covered; every third run one deeper."""
        d = 1
        while d < PCT_MAX_DEPTH and self.bound(d) >= PCT_TARGET:
            d += 1
        return min(d + 1, PCT_MAX_DEPTH) if run % 3 == 2 else d


def pct_guarantee(worlds: list[_PctWorld]) -> dict[str, Any]:
    """What PCT's runs guarantee, per depth: in the weakest world searched (a bug every world
    has) and across worlds (a bug that only :data:`WORLD_SHARE` of the worlds have)."""
    depths = sorted({d for w in worlds for d, r in w.runs_by_depth.items() if r})
    weakest = {d: min(w.bound(d) for w in worlds) for d in depths}
    across = {d: 1 - math.prod(1 - WORLD_SHARE * w.bound(d) for w in worlds) for d in depths}
    return {"depths": {d: sum(w.runs_by_depth.get(d, 0) for w in worlds) for d in depths},
            "bound_every_world": weakest, "bound_some_worlds": across}


def explore_pct(
    scenario: Scenario, strategy: Strategy, seed: int, depth: int | None, window_us: int | None, budget: _Budget,
    backend: TrackerBackend, focus: Focus = ALL, worlds: int | None = None, coverage: Saturation | None = None,
) -> Exploration:
    """PCT over worlds ``seed, seed+1, ...``: each world's case is searched for its share of the
    budget, at ``depth`` or (``None``) deepening 1, 2, 3, ... (:meth:`_PctWorld.next_depth`)."""
    if budget.seconds is None:
        count = worlds or max(1, math.ceil((budget.runs or 0) / PCT_RUNS_PER_WORLD))
        per_world = max(1, math.ceil((budget.runs or 0) / count))
    else:
        count, per_world = worlds or 0, PCT_RUNS_PER_WORLD
    coverage = coverage if coverage is not None else Saturation()
    searched: list[_PctWorld] = []
    runs = 0
    found: Counterexample | None = None
    found_at: dict[str, Any] = {}
    max_hold = 0
    while found is None and budget.left(runs) and (not count or len(searched) < count or runs % per_world):
        if runs % per_world == 0 or not searched:
            world_seed = seed + len(searched)
            case = case_for(scenario, strategy, world_seed)
            names = [a.name for a in case.actors if strategy.handler(a.event) is not None]
            names += sorted(case.branch_latencies)  # Parallel statements: threads of their own
            steps = run_ordered(case, strategy, backend, FirstReady(), window_us).ops
            searched.append(_PctWorld(world_seed, case, names, steps))
        w = searched[-1]
        j = runs % per_world
        d = depth or w.next_depth(j)
        rng = random.Random(f"racetrack:{seed}:pct:{w.seed}:{j}")
        run = run_ordered(w.case, strategy, backend, PctScheduler(rng, w.names, w.steps, d), window_us)
        runs += 1
        coverage.add_record(run.record)
        w.runs_by_depth[d] = w.runs_by_depth.get(d, 0) + 1
        w.steps = max(w.steps, run.ops)
        max_hold = max(max_hold, run.max_hold_us)
        if focus.hits(run.record):
            small_case, small_run = reduce_to_job(w.case, run, strategy, backend, focus)
            found = Counterexample(small_case, small_run, tuple(small_run.violations()))
            found_at = {"found_depth": d, "found_world": w.seed, "found_run": runs}
    explored = {
        "runs": runs, "worlds": len(searched), "world_seeds": [seed, seed + max(0, len(searched) - 1)],
        "actors": max((len(w.names) for w in searched), default=0),
        "steps": max((w.steps for w in searched), default=0), "deepening": depth is None,
        "window_ms": None if window_us is None else window_us / 1000, "max_hold_ms": max_hold / 1000,
        **pct_guarantee(searched), **found_at, "coverage": coverage.to_data(),
    }
    return Exploration("pct", found, explored, budget.elapsed())


# --- the portfolio ---------------------------------------------------------------------------


def explore_portfolio(
    scenario: Scenario, strategy: Strategy, seed: int, runs: int | None, seconds: float | None,
    backend: TrackerBackend, focus: Focus, window_ms: float | None, database: str | None,
    methods: tuple[str, ...] | None = None,
) -> Exploration:
    """:data:`PORTFOLIO`'s methods (or those of them in ``methods``) in turn, each with its share
    of the budget, until one finds a counterexample; ``explored`` says what each one searched
    and which one found it."""
    started = time.perf_counter()  # wall-clock ok: reported seconds
    parts: list[dict[str, Any]] = []
    found: Counterexample | None = None
    found_by: str | None = None
    coverage = Saturation()  # one count over every method's runs
    chosen = [(m, share) for m, share in PORTFOLIO if methods is None or m in methods]
    total = sum(share for _, share in chosen)
    for method, share in ((m, share / total) for m, share in chosen):
        part_runs = None if runs is None else max(1, round(runs * share))
        part_seconds = None if seconds is None else seconds * share
        if method == "exhaustive":
            # One job's orders, world after world: a share of the runs as interleavings.
            limit = part_runs if part_runs is not None else 2000
            one_job = scenario.with_values({"job.count": 1})
            # Within the world, as PCT: an unbounded hold-back finds "races" no network makes.
            window_us = round((DEFAULT_WINDOW_MS if window_ms is None else window_ms) * 1000)


            def world(k: int, one_job: Scenario = one_job) -> Case:
                return case_for(one_job, strategy, seed + k)

            try:
                result = explore_exhaustive(
                    case_for(one_job, strategy, seed), strategy, limit, backend, focus, window_us, world, EXHAUSTIVE_WORLDS,
                    coverage,
                )
            except TooManyOrders as exc:  # the other methods go on: no advice naming explore's options here
                parts.append({"method": method, "skipped": f"{exc.size}, more than its share of the runs, {limit:,}", "seconds": 0.0})
                continue
            except ExploreError as exc:
                parts.append({"method": method, "skipped": str(exc), "seconds": 0.0})
                continue
        else:
            budget = _Budget(part_runs, part_seconds)
            if method == "random":
                result = explore_random(scenario, strategy, seed, budget, backend, focus, coverage)
            elif method == "pct":
                window_us = round((DEFAULT_WINDOW_MS if window_ms is None else window_ms) * 1000)
                result = explore_pct(scenario, strategy, seed, None, window_us, budget, backend, focus, None, coverage)
            else:
                result = explore_hypothesis(scenario, strategy, seed, budget, backend, database, focus, coverage)
        parts.append({"method": method, "explored": result.explored, "seconds": result.seconds})
        if result.found is not None:
            found, found_by = result.found, method
            break
    seconds_spent = round(time.perf_counter() - started, 3)  # wall-clock ok: reported seconds
    return Exploration("portfolio", found, {"found_by": found_by, "parts": parts, "coverage": coverage.to_data()},
                       seconds_spent)


# --- the entry point ---------------------------------------------------------------------------


def case_for(scenario: Scenario, strategy: Strategy, seed: int) -> Case:
    """The case of one SimPy run of ``scenario`` (its actors, clocks and truth)."""
    world, record = _simulate(scenario, strategy, seed)
    return case_from_world(world, record, scenario, seed)


def explore(
    scenario: Scenario,
    strategy: Strategy,
    method: str = "portfolio",
    seed: int = 0,
    runs: int | None = None,
    seconds: float | None = None,
    depth: int | None = None,
    window_ms: float | None = None,
    database: str | None = None,
    invariants: tuple[str, ...] = (),
    backend_spec: BackendSpec | None = None,
    worlds: int | None = None,
    portfolio: tuple[str, ...] | None = None,
) -> Exploration:
    """Search ``scenario`` x ``strategy`` with ``method``; ``runs`` (or ``seconds``) bounds it
    (for ``exhaustive``, ``runs`` is the most interleavings it will enumerate). ``window_ms``
    bounds how long an operation may be held back: PCT's default is :data:`DEFAULT_WINDOW_MS`,
    exhaustive's is no bound (every order). PCT deepens unless ``depth`` is given; ``worlds``
    fixes how many worlds (seeds ``seed, seed+1, ...``) the budget is split over; ``portfolio``
    limits the default method to some of its methods."""
    if method not in METHODS:
        raise ExploreError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    require_modelled(scenario.to_toml_table(), scenario.source)
    from sim.judge.invariants import UnknownInvariant, require_known

    try:
        require_known(invariants, "--invariant")
    except UnknownInvariant as exc:
        raise ExploreError(str(exc)) from None
    focus = Focus(tuple(invariants))
    if runs is None and seconds is None:
        runs = DEFAULT_BUDGET[method]
    budget = _Budget(runs, seconds)
    backend = open_backend(backend_spec or BackendSpec(), scenario.table)
    try:
        if method == "portfolio":
            return explore_portfolio(scenario, strategy, seed, runs, seconds, backend, focus, window_ms, database, portfolio)
        if method == "random":
            return explore_random(scenario, strategy, seed, budget, backend, focus)
        if method == "hypothesis":
            return explore_hypothesis(scenario, strategy, seed, budget, backend, database, focus)
        if method == "exhaustive":
            case = case_for(scenario, strategy, seed)
            window_us = None if window_ms is None else round(window_ms * 1000)
            limit = runs if runs is not None else DEFAULT_BUDGET["exhaustive"]
            return explore_exhaustive(
                case, strategy, limit, backend, focus, window_us,
                lambda k: case_for(scenario, strategy, seed + k), worlds or EXHAUSTIVE_WORLDS,
            )
        window_us = round((DEFAULT_WINDOW_MS if window_ms is None else window_ms) * 1000)
        return explore_pct(scenario, strategy, seed, depth, window_us, budget, backend, focus, worlds)
    finally:
        close_backend(backend)
