"""The one handler interpreter: what a handler yields or raises, classified once for every driver."""

from __future__ import annotations

from sim.engine import interpreter
from sim.engine.scenario import load
from sim.runs.runner import run_one
from tracker.ops import Select, Sleep, TrackerError, Update
from tracker.strategies import HandlerContext, JobView, Strategy

VIEW = JobView(id="job-1", attempt=1, attempts_made=0, attempts_started=1, max_attempts=1, timestamp_us=0)
CTX = HandlerContext(host="worker-1")


def selects_then_divides(job, ctx):
    yield Select(job.id)
    return 1 / 0  # line the crash must name


def yields_a_string(job, ctx):
    yield "UPDATE job_status SET status = 'active'"


def returns_an_update(job, ctx):
    return Update(job.id, {"status": "active"})


def test_operation_then_crash_names_the_users_file_and_line() -> None:
    gen = interpreter.start(selects_then_divides, VIEW, CTX)
    first = interpreter.advance(gen)
    assert isinstance(first, interpreter.Yielded) and first.op == Select("job-1")
    crash = interpreter.advance(gen, {"status": "waiting"})
    assert isinstance(crash, interpreter.Crashed)
    line = selects_then_divides.__code__.co_firstlineno + 2
    assert crash.where == f"test_interpreter.py:{line} in selects_then_divides"
    assert crash.message == f"handler crashed: ZeroDivisionError: division by zero (test_interpreter.py:{line} in selects_then_divides)"


def test_invalid_yield_is_thrown_back_and_names_what_was_expected() -> None:
    gen = interpreter.start(yields_a_string, VIEW, CTX)
    crash = interpreter.advance(gen)
    assert isinstance(crash, interpreter.Crashed)
    assert "which is not a tracker operation" in crash.summary
    assert crash.where.startswith("test_interpreter.py:") and crash.where.endswith("in yields_a_string")


def test_a_handler_that_is_not_a_generator_is_one_clear_crash() -> None:
    crash = interpreter.start(returns_an_update, VIEW, CTX)
    assert isinstance(crash, interpreter.Crashed)
    assert "not a generator" in crash.summary and "yield op" in crash.summary
    assert crash.where == f"test_interpreter.py:{returns_an_update.__code__.co_firstlineno} in returns_an_update"


def test_an_uncaught_tracker_error_is_unhandled_not_a_crash() -> None:
    def handler(job, ctx):
        yield Select(job.id)

    gen = interpreter.start(handler, VIEW, CTX)
    interpreter.advance(gen)
    out = interpreter.advance(gen, throw=TrackerError("23514", "job_status_timestamps_check", "violates check"))
    assert isinstance(out, interpreter.Unhandled)
    assert out.message == "unhandled 23514: violates check"


def test_both_drivers_report_a_crash_with_the_same_location() -> None:
    """A crash ends the run as an error naming the handler's file and line, in both drivers."""
    strategy = Strategy("crashy", "crashes on active", on_active=selects_then_divides)
    result = run_one(load("process-success"), strategy, 0)
    line = selects_then_divides.__code__.co_firstlineno + 2
    where = f"(test_interpreter.py:{line} in selects_then_divides)"
    assert result.crashes and all(c.endswith(where) for c in result.crashes)
    assert result.error == f"strategy crashy: job-1.active#1 handler crashed: ZeroDivisionError: division by zero {where}"
    errors = [s.error[2] for s in result.record.steps if s.kind == "error"]
    assert errors and errors[0].startswith("handler crashed: ZeroDivisionError")

    import pytest

    from sim.engine.limits import StrategyFailed
    from sim.engine.ordered import FollowSchedule, run_ordered, schedule_of
    from sim.engine.world import World, case_from_world
    from tracker.memory import MemoryTracker

    scenario = load("process-success")
    world = World(scenario, strategy, MemoryTracker(), 0)
    record = world.run()
    with pytest.raises(StrategyFailed) as failed:
        run_ordered(case_from_world(world, record, scenario, 0), strategy, MemoryTracker(), FollowSchedule(list(schedule_of(record))))
    assert str(failed.value) == f"{result.error} (the run was not judged)"


def test_step_builders_make_the_same_record_the_step_constructor_makes() -> None:
    # The builders fill a Step's __dict__ in one go (faster than the frozen dataclass __init__):
    # a field added to Step and forgotten there must fail here, not go missing from histories.
    from dataclasses import fields

    from sim.engine.driver import Actor
    from sim.record.clocks import Clock
    from sim.record.history import Step, clock_step, db_step, error_step
    from tracker.backend import Done
    from tracker.ops import ReadClock

    who = Actor("job-1.active#1", "job-1", "active", "worker-1", Clock("worker-1", 0, 0.0, 1000))
    row = {"job_id": "job-1", "status": "active"}
    op = Update("job-1", {"status": "active"})
    error = TrackerError("23514", "a_check", "violates")
    built = [
        (clock_step(0, who, 5, 7), Step(0, who.name, "job-1", "active", "worker-1", "clock", ReadClock(), 5, 5, 5, clock_us=7)),
        (error_step(1, who, 5, "boom"), Step(1, who.name, "job-1", "active", "worker-1", "error", None, 5, 5, 5, error=("", None, "boom"))),
        (
            db_step(2, who, op, sent_us=1, arrived_us=2, executed_us=4, replied_us=6, db_now_us=9, blocked_by=("x",),
                    outcome=Done(value=row), row_before=None, row_after=row, committed=(row,)),
            Step(2, who.name, "job-1", "active", "worker-1", "db", op, 1, 4, 6, db_now_us=9, waited_us=2, blocked_by=("x",),
                 result=row, row_before=None, row_after=row, committed=(row,)),
        ),
        (
            db_step(3, who, op, sent_us=1, arrived_us=1, executed_us=1, replied_us=3, db_now_us=1, blocked_by=(),
                    outcome=Done(error=error), row_before=row, row_after=row, committed=()),
            Step(3, who.name, "job-1", "active", "worker-1", "db", op, 1, 1, 3, db_now_us=1,
                 error=("23514", "a_check", "violates"), row_before=row, row_after=row),
        ),
    ]
    for step, expected in built:
        assert step == expected
        assert list(vars(step)) == [f.name for f in fields(Step)]


def selects_then_exits(job, ctx):
    yield Select(job.id)
    raise SystemExit(0)  # line the crash must name: sys.exit() in a handler


def test_sys_exit_in_a_handler_is_a_crash_not_racetracks_exit() -> None:
    crash = _second_step(selects_then_exits)
    assert isinstance(crash, interpreter.Crashed)
    line = selects_then_exits.__code__.co_firstlineno + 2
    assert crash.message == (f"handler crashed: RuntimeError: the handler called sys.exit(0) "
                             f"(test_interpreter.py:{line} in selects_then_exits)")


def test_sys_exit_when_a_strategy_module_is_imported_is_one_line_exit_2(tmp_path, monkeypatch, capsys) -> None:
    from sim.cli import main

    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "process-success", "--strategy", "exits_at_import:S"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("racetrack: strategy 'exits_at_import:S': module 'exits_at_import' called "
                                 "sys.exit(1) while being imported\n")


def selects_then_raises_generator_exit(job, ctx):
    yield Select(job.id)
    raise GeneratorExit  # line the crash must name: not the end of the handler, a crash


def selects_then_calls_builtin_exit(job, ctx):
    yield Select(job.id)
    exit(1)  # noqa: PLR1722 - the builtin (site's Quitter), line the crash must name


def _second_step(handler) -> interpreter.Outcome:
    """What ``handler`` does once its first operation (a SELECT) is answered."""
    gen = interpreter.start(handler, VIEW, CTX)
    interpreter.advance(gen)
    return interpreter.advance(gen, {"status": "waiting"})


def test_a_handler_raising_generator_exit_is_a_crash_not_an_escape() -> None:
    crash = _second_step(selects_then_raises_generator_exit)
    assert isinstance(crash, interpreter.Crashed)
    line = selects_then_raises_generator_exit.__code__.co_firstlineno + 2
    assert crash.where == f"test_interpreter.py:{line} in selects_then_raises_generator_exit"


def test_the_builtin_exit_is_located_in_the_handler_not_in_site() -> None:
    crash = _second_step(selects_then_calls_builtin_exit)
    assert isinstance(crash, interpreter.Crashed) and "sys.exit(1)" in crash.summary
    line = selects_then_calls_builtin_exit.__code__.co_firstlineno + 2
    assert crash.where == f"test_interpreter.py:{line} in selects_then_calls_builtin_exit"


def sleeps_nan(job, ctx):
    yield Select(job.id)
    yield Sleep(float("nan"))  # line the crash must name: not the dataclass's generated __init__


def test_a_bad_operation_built_in_a_handler_is_located_in_the_handler() -> None:
    crash = _second_step(sleeps_nan)
    assert isinstance(crash, interpreter.Crashed) and "Sleep(ms)" in crash.summary
    assert crash.where == f"test_interpreter.py:{sleeps_nan.__code__.co_firstlineno + 2} in sleeps_nan"
