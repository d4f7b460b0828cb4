"""A handler that never ends, crashes, or asks for something the table cannot take is stopped, and
the run becomes an error naming the handler, its file and line, and what stopped it: never a hang,
never a verdict on the race."""

from __future__ import annotations

import pytest

from sim.engine.limits import Limits, StrategyFailed, applied
from sim.engine.scenario import load
from sim.runs.runner import run_one, summarize
from sim.search.explore import explore
from tracker.ops import ReadClock, Select, Sleep, Update
from tracker.strategies import Strategy

SCENARIO = load("process-success")


def select_forever(job, ctx):
    while True:
        yield Select(job.id)


def sleep_forever(job, ctx):
    while True:
        yield Sleep(86_400_000)


def read_clock_forever(job, ctx):
    while True:
        yield ReadClock()


def spin_forever(job, ctx):
    yield Select(job.id)
    while True:
        pass


def sets_a_missing_column(job, ctx):
    yield Update(job.id, {"colour": "red"})


def sets_a_wrong_type(job, ctx):
    yield Update(job.id, {"attempts": "many"})


def _line(fn, offset: int) -> str:
    return f"test_runaway_handlers.py:{fn.__code__.co_firstlineno + offset} in {fn.__name__}"


@pytest.mark.parametrize(("handler", "line"), [(select_forever, 2), (read_clock_forever, 2)])
def test_a_handler_that_yields_forever_is_stopped_by_the_operations_limit(handler, line):
    result = run_one(SCENARIO, Strategy("loop", "x", on_active=handler), 0, limits=Limits(ops_per_handler=500))
    assert result.error.startswith("strategy loop: job-1.active#1 (" + _line(handler, line) + ")")
    assert result.error.endswith("yielded more than 500 operations (--max-ops)")
    row = result.row()
    assert row["error"] == result.error and row["violating"] is False and row["violations"] == 0
    assert summarize([row])[0]["errors"] == 1


def test_a_handler_that_sleeps_forever_is_stopped_by_the_simulated_time_limit():
    result = run_one(SCENARIO, Strategy("sleepy", "x", on_active=sleep_forever), 0, limits=Limits(sim_seconds=3600))
    assert "went past 3600 simulated seconds (--max-sim-seconds)" in result.error
    assert f"still running: job-1.active#1 ({_line(sleep_forever, 2)})" in result.error


def test_a_handler_stuck_in_a_cpu_loop_is_stopped_by_the_wall_clock_limit():
    result = run_one(SCENARIO, Strategy("spin", "x", on_active=spin_forever), 0, limits=Limits(wall_seconds=0.5))
    assert "took longer than 0.5 s of wall time (--max-run-seconds)" in result.error
    # the signal lands on the loop's head or its body
    assert result.error.endswith((f"it was running {_line(spin_forever, 2)}", f"it was running {_line(spin_forever, 3)}"))


@pytest.mark.parametrize(("handler", "message"), [
    (sets_a_missing_column, "ValueError: UPDATE may not set column 'colour'"),
    (sets_a_wrong_type, "ValueError: UPDATE sets attempts (integer) to 'many', which is not a 32-bit integer"),
])
def test_an_operation_the_table_cannot_take_is_a_crash_at_the_handlers_yield(handler, message):
    result = run_one(SCENARIO, Strategy("bad", "x", on_active=handler), 0)
    assert result.error.startswith(f"strategy bad: job-1.active#1 handler crashed: {message}")
    assert result.error.endswith(f"({_line(handler, 1)})")


@pytest.mark.parametrize("ms", [float("nan"), float("inf"), -5, "5", True, 86_400_001])
def test_sleep_refuses_what_is_not_a_duration(ms):
    with pytest.raises(ValueError, match="Sleep\\(ms\\) needs a number of milliseconds from 0 to 86400000"):
        Sleep(ms)


def test_searches_and_replays_stop_a_runaway_handler_with_one_line():
    strategy = Strategy("loop", "x", on_active=select_forever)
    with applied(Limits(ops_per_handler=200)), pytest.raises(StrategyFailed, match=r"yielded more than 200 operations"):
        explore(SCENARIO, strategy, "exhaustive", seed=0, runs=5)
    with applied(Limits(ops_per_handler=200)), pytest.raises(StrategyFailed, match=r"yielded more than 200 operations"):
        explore(SCENARIO, strategy, "random", seed=0, runs=2)


def test_the_default_limits_leave_every_bundled_scenario_alone():
    """No bundled scenario comes near a limit: the defaults never change a result."""
    from sim.engine.scenario import bundled_names
    from tracker.strategies import BUILTIN, load_strategy

    tight = Limits(ops_per_handler=60, sim_seconds=600)
    for name in bundled_names():
        for ref in BUILTIN:
            assert not run_one(load(name), load_strategy(ref), 0, limits=tight).error, (name, ref)
