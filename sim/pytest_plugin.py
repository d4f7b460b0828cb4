"""The pytest plugin (entry point ``pytest11``: ``racetrack``): judge your own handlers in your
own test suite.

``racetrack`` fixture: ``racetrack.assert_holds("my_pkg.handlers:HANDLERS",
scenario="seed-fast-jobs", runs=2000)`` runs the strategy on ``runs`` seeded worlds and, if any
invariant is violated, fails the test with the rates, the timeline of the shortest counterexample
(the violating run with the fewest database operations) and the ``racetrack run`` command that
replays it. ``assert_violates`` pins a known race instead.

Hypothesis settings profiles ``racetrack-dev`` (fast, local) and ``racetrack-ci`` (thorough,
derandomized) are registered. The racetrack profile in force is, first that is set: the command
line option ``--racetrack-profile dev|ci``, the environment variable ``RACETRACK_PROFILE``, the ini
key ``racetrack_profile`` (pytest.ini, ``[tool.pytest.ini_options]``...); else ``racetrack-ci``
when ``CI`` is set to true (as CI services do), else ``racetrack-dev``. It sets ``assert_holds``'s
default run count. The matching Hypothesis profile is *loaded* only when one of those three asks
for it explicitly (or ``--hypothesis-profile racetrack-ci`` does): merely having racetrack
installed must not change the settings of a project's other Hypothesis tests.

May import: pytest, hypothesis, ``sim`` (scenario, sweep, check, runner, timeline, the CLI's limits),
``tracker.strategies``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

PROFILES = {
    "racetrack-dev": {"max_examples": 50, "deadline": None, "suppress_health_check": [HealthCheck.too_slow]},
    "racetrack-ci": {
        "max_examples": 500, "deadline": None, "derandomize": True, "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
}
DEFAULT_RUNS = {"racetrack-dev": 200, "racetrack-ci": 2000}

for _name, _options in PROFILES.items():
    settings.register_profile(_name, **_options)  # type: ignore[arg-type]


def profile_name(environ: Mapping[str, str] = os.environ, option: str | None = None, ini: str | None = None) -> str:
    """The profile asked for by the command line ``option``, else the environment, else the ``ini``
    key, else ``CI`` (see the module docstring)."""
    source = _explicit_choice(environ, option, ini)
    if source:
        chosen = source[1]
        return chosen if chosen.startswith("racetrack-") else f"racetrack-{chosen}"
    return "racetrack-ci" if environ.get("CI", "").strip().lower() in ("1", "true", "yes") else "racetrack-dev"


def _explicit_choice(environ: Mapping[str, str], option: str | None, ini: str | None) -> tuple[str, str] | None:
    """(where, value) of the first explicit choice of profile, or None when none was made."""
    for where, value in (("--racetrack-profile", option), ("RACETRACK_PROFILE", environ.get("RACETRACK_PROFILE")),
                         ("racetrack_profile (ini)", ini)):
        if value and value.strip():
            return where, value.strip()
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = "racetrack profile: dev (200 runs per assert_holds) or ci (2000, derandomized Hypothesis)"
    parser.getgroup("racetrack").addoption("--racetrack-profile", metavar="dev|ci", help=help_text)
    parser.addini("racetrack_profile", help_text + "; RACETRACK_PROFILE and --racetrack-profile override it", default="")


def _configured_profile(config: pytest.Config) -> str:
    return profile_name(os.environ, config.getoption("racetrack_profile"), config.getini("racetrack_profile"))


def pytest_configure(config: pytest.Config) -> None:
    name = _configured_profile(config)
    explicit = _explicit_choice(os.environ, config.getoption("racetrack_profile"), config.getini("racetrack_profile"))
    if name not in PROFILES:
        where, value = explicit or ("profile", name)
        raise pytest.UsageError(f"{where}={value!r}: use dev or ci (racetrack-dev, racetrack-ci)")
    chose_own = config.getoption("hypothesis_profile", default=None) or getattr(settings, "_current_profile", "default") != "default"
    if explicit and not chose_own:
        settings.load_profile(name)


def pytest_report_header(config: pytest.Config) -> str:
    name = _configured_profile(config)
    return f"racetrack: profile {name} (assert_holds default runs: {DEFAULT_RUNS.get(name, '?')})"


@dataclass(frozen=True)
class Racetrack:
    """What the ``racetrack`` fixture gives a test."""

    profile: str

    @property
    def default_runs(self) -> int:
        return DEFAULT_RUNS[self.profile]

    def assert_holds(
        self,
        strategy: str,
        scenario: str = "seed-fast-jobs",
        runs: int | None = None,
        seed: int = 0,
        invariants: tuple[str, ...] | list[str] | None = None,
        workers: int = 1,
    ) -> None:
        """Fail the test unless every invariant (or each one in ``invariants``) holds in every run
        of ``strategy`` (built-in name or ``module:attr``) on ``scenario`` (bundled name or path)."""
        from sim.judge.invariants import INVARIANT_IDS
        from sim.runs.check import replay_command

        if isinstance(invariants, str):  # one ID given bare: a string is not its letters
            pytest.fail(f"racetrack: invariants={invariants!r}: give a list of invariant IDs, e.g. [{invariants!r}]",
                        pytrace=False)
        judged = tuple(invariants) if invariants else INVARIANT_IDS
        _require_known(judged)
        runs = _checked(runs, seed, workers, self.default_runs)
        tallies = _tallies(strategy, scenario, runs, seed, workers)
        broken = [tallies[i] for i in judged if tallies[i].violating_runs]
        unjudged = [t for i in judged if (t := tallies[i]).unknown_runs]
        if not broken and unjudged:
            pytest.fail(
                f"racetrack: strategy {strategy} on scenario {scenario}: not shown to hold, "
                + "; ".join(f"{t.invariant} could not be judged in {t.unknown_runs}/{runs} runs (its checker crashed)" for t in unjudged),
                pytrace=False,
            )
        if not broken:
            return
        shortest = min(broken, key=lambda t: (t.shortest.ops, t.shortest.seed) if t.shortest else (0, 0))
        assert shortest.shortest is not None
        lines = [
            f"racetrack: strategy {strategy} broke {len(broken)} invariant(s) on scenario {scenario} "
            f"({runs} runs, seeds {seed}..{seed + runs - 1}):"
        ]
        lines += [f"  {t.invariant}: violated in {t.violating_runs}/{runs} runs" for t in broken]
        lines += ["", _counterexample(strategy, scenario, shortest.shortest.seed), ""]
        lines.append(f"replay: {replay_command(scenario, strategy, shortest.shortest.seed)}")
        pytest.fail("\n".join(lines), pytrace=False)

    def assert_violates(
        self,
        strategy: str,
        invariant: str,
        scenario: str = "seed-fast-jobs",
        runs: int | None = None,
        seed: int = 0,
        workers: int = 1,
    ) -> None:
        """Fail the test unless ``invariant`` is violated in at least one run (pins a known race)."""
        _require_known([invariant])
        runs = _checked(runs, seed, workers, self.default_runs)
        tally = _tallies(strategy, scenario, runs, seed, workers)[invariant]
        if not tally.violating_runs:
            pytest.fail(
                f"racetrack: strategy {strategy} never violated {invariant} on scenario {scenario} "
                f"in {runs} runs (seeds {seed}..{seed + runs - 1})",
                pytrace=False,
            )


def _checked(runs: int | None, seed: int, workers: int, default_runs: int) -> int:
    """The run count to use (``None``: the profile's); fail the test, in one line, on a count,
    seed or worker count the command line would refuse (with the command line's limits). Zero or
    negative runs judge nothing, so an assertion over them could never fail."""
    from sim.cli.args import MAX_RUNS, MAX_SEED, MAX_WORKERS

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if runs is not None and (not whole(runs) or not 1 <= runs <= MAX_RUNS):
        pytest.fail(f"racetrack: runs={runs!r}: give a whole number from 1 to {MAX_RUNS:,} (or leave it out: the "
                    f"profile's {default_runs})", pytrace=False)
    runs = default_runs if runs is None else runs
    if not whole(seed) or not 0 <= seed <= MAX_SEED - (runs - 1):
        pytest.fail(f"racetrack: seed={seed!r}: give a whole number from 0 to {MAX_SEED - (runs - 1)} "
                    f"(runs use seeds seed..seed+{runs - 1})", pytrace=False)
    if not whole(workers) or not 1 <= workers <= MAX_WORKERS:
        pytest.fail(f"racetrack: workers={workers!r}: give a whole number from 1 to {MAX_WORKERS}", pytrace=False)
    return runs


def _require_known(ids: tuple[str, ...] | list[str]) -> None:
    """Fail the test, in one line, when ``ids`` names an invariant that does not exist."""
    from sim.judge.invariants import UnknownInvariant, require_known

    try:
        require_known(ids, "racetrack")
    except UnknownInvariant as exc:
        pytest.fail(str(exc), pytrace=False)


def _tallies(strategy: str, scenario: str, runs: int, seed: int, workers: int) -> dict:
    from sim.engine import scenario as scenarios
    from sim.runs.check import TallyBuilder
    from sim.runs.sweep import Execution, Sweep, SweepError, SweepRun
    from tracker.strategies import StrategyNotFound, load_strategy

    try:
        loaded = scenarios.load(scenario)
        load_strategy(strategy)
    except (scenarios.ScenarioError, StrategyNotFound) as exc:
        pytest.fail(f"racetrack: {exc}", pytrace=False)
    builder = TallyBuilder()
    try:
        with SweepRun(Sweep((loaded,), (strategy,), runs, seed), Execution(workers=workers)) as run:
            for row in run.rows():
                builder.add(row)
    except SweepError as exc:
        pytest.fail(f"racetrack: {exc}", pytrace=False)
    if builder.errors:  # a run that could not finish judged nothing: never counted as held (nor as violated)
        pytest.fail(f"racetrack: strategy {strategy} on scenario {scenario}: {builder.errors}/{runs} runs could not be "
                    f"judged; first: {builder.first_error}", pytrace=False)
    return builder.tallies()


def _counterexample(strategy: str, scenario: str, seed: int) -> str:
    """The timeline of one run, violations marked, as ``racetrack run`` prints it."""
    from sim.engine import scenario as scenarios
    from sim.judge.timeline import render
    from sim.runs.runner import run_one
    from tracker.strategies import load_strategy

    result = run_one(scenarios.load(scenario), load_strategy(strategy), seed)
    header = f"shortest counterexample: seed {seed}, {result.ops} database operations"
    verdict = [f"  {v.line()}" for v in result.violations]
    return render(result.record, result.violations, header) + "\n\nviolations in this run:\n" + "\n".join(verdict)


@pytest.fixture(scope="session")
def racetrack(pytestconfig: pytest.Config) -> Racetrack:
    """Judge a strategy from a test: ``racetrack.assert_holds("my_pkg.handlers:HANDLERS")``."""
    return Racetrack(_configured_profile(pytestconfig))
