"""Listeners on ``QueueEvents``: events through a Redis stream, later than the Worker's, in
stream order, and possibly missed; Worker events stay as they were unless a scenario asks."""

from __future__ import annotations

from worlds import world_of

from sim.engine.world import World

JOBS = "[job]\ncount = 30\ninterarrival = { fixed_ms = 5 }\nduration = { fixed_ms = 20 }\n"


def _starts(world: World) -> dict[str, int]:
    return {sp.actor.name: sp.at_us for sp in world.spawned if sp.actor.event != "created"}


def test_queue_events_deliver_every_event_later_in_stream_order_on_the_listeners_host(tmp_path):
    worker = _starts(world_of(JOBS, tmp_path, run=True))
    stream_world = world_of(JOBS + '[listeners]\nsource = "queue-events"\ndelay = { min_ms = 1, max_ms = 50 }\n', tmp_path, run=True)
    stream = _starts(stream_world)
    assert set(stream) == set(worker)
    assert all(stream[name] > worker[name] for name in worker)
    order = [sp.at_us for sp in stream_world.spawned if sp.actor.event != "created"]
    assert order == sorted(order)  # a stream never delivers an event before an earlier one
    assert {sp.actor.host for sp in stream_world.spawned if sp.actor.event != "created"} == {"api"}


def test_a_missed_event_starts_no_handler(tmp_path):
    world = world_of(JOBS + '[listeners]\nsource = "queue-events"\nmiss_probability = 1\n', tmp_path, run=True)
    assert not _starts(world) and len(world.missed_events) == 60  # 'active' and 'completed' of 30 jobs
    record = world.record()
    assert {row["status"] for row in record.rows.values()} == {"waiting"}
