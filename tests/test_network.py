"""The network as production has it (``sim.engine.network``): latency per operation kind and
host, heavy-tail pauses, a client pool, and the HTTP client; and nothing of it unless asked."""

from __future__ import annotations

from sim.engine import scenario as scenarios
from sim.engine.driver import Driver
from sim.engine.network import NetworkDriver
from sim.engine.world import World
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Commit, Insert, Select, Update
from tracker.strategies import load_strategy

FAST = "[job]\ncount = 3\ninterarrival = { fixed_ms = 0 }\nduration = { fixed_ms = 20 }\n"


def _run(text: str, tmp_path, strategy: str = "naive", seed: int = 0) -> tuple[World, list]:
    path = tmp_path / "net.toml"
    path.write_text(text)
    world = World(scenarios.load(str(path)), load_strategy(strategy), MemoryTracker(), seed)
    record = world.run()
    return world, [s for s in record.steps if s.kind == "db"]


def test_a_scenario_without_network_keys_runs_the_plain_driver(tmp_path):
    world, _ = _run(FAST, tmp_path)
    assert type(world.driver) is Driver


def test_each_operation_kind_takes_its_own_round_trip(tmp_path):
    world, steps = _run(
        FAST + "[network]\nread_rtt = { fixed_ms = 10 }\nwrite_rtt = { fixed_ms = 40 }\n", tmp_path
    )
    assert isinstance(world.driver, NetworkDriver)
    trips = {(type(s.op), s.replied_us - s.sent_us - s.waited_us) for s in steps}
    assert trips == {(Select, 10_000), (Update, 40_000), (Insert, 40_000)}


def test_a_host_groups_round_trip_applies_to_its_hosts_only(tmp_path):
    _, steps = _run(FAST + "[network.api]\ndb_rtt = { fixed_ms = 30 }\n[network.workers]\ndb_rtt = { fixed_ms = 6 }\n", tmp_path)
    assert {s.replied_us - s.sent_us for s in steps if s.host == "api"} == {30_000}
    assert {s.replied_us - s.sent_us for s in steps if s.host.startswith("worker")} == {6_000}


def test_a_certain_pause_delays_both_directions_of_every_operation(tmp_path):
    _, steps = _run(
        FAST + "[network]\ndb_rtt = { fixed_ms = 2 }\npause_probability = 1\npause = { fixed_ms = 1000 }\n", tmp_path
    )
    assert {s.replied_us - s.sent_us - s.waited_us for s in steps} == {2_002_000}


def test_a_pool_of_one_serialises_a_hosts_statements_and_a_large_pool_does_not(tmp_path):
    many = "[job]\ncount = 6\ninterarrival = { fixed_ms = 0 }\nduration = { fixed_ms = 5 }\n[workers]\nconcurrency = 6\n"
    many += "[handlers]\nactive_delay_ms = 0\ncompleted_delay_ms = 0\n"

    def overlaps(steps: list) -> int:
        spans = sorted((s.sent_us, s.replied_us) for s in steps if s.host == "worker-1")
        return sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])

    _, pooled = _run(many + "[network]\npool_size = 1\n", tmp_path)
    _, wide = _run(many + "[network]\npool_size = 10\n", tmp_path)
    assert overlaps(pooled) == 0 and overlaps(wide) > 0


def test_a_pool_connection_is_held_from_begin_to_commit(tmp_path):
    many = "[job]\ncount = 4\ninterarrival = { fixed_ms = 0 }\nduration = { fixed_ms = 5 }\n[workers]\nconcurrency = 4\n"
    many += "[handlers]\nactive_delay_ms = 0\ncompleted_delay_ms = 0\n[network]\npool_size = 1\n"
    _, steps = _run(many, tmp_path, strategy="row-lock")
    ours = sorted((s for s in steps if s.host == "worker-1"), key=lambda s: s.sent_us)
    open_by: str | None = None
    for s in ours:  # on one connection, a transaction's statements are never interleaved with another's
        if open_by is not None:
            assert s.actor == open_by
        if isinstance(s.op, Begin):
            open_by = s.actor
        elif isinstance(s.op, Commit):
            open_by = None


def test_over_http_begin_and_commit_reach_nothing_and_every_call_crosses_the_hop(tmp_path):
    _, steps = _run(
        FAST + '[network]\ndb_rtt = { fixed_ms = 2 }\nclient = "http"\nhttp_rtt = { fixed_ms = 20 }\n', tmp_path,
        strategy="row-lock",
    )
    assert not any(isinstance(s.op, (Begin, Commit)) for s in steps)
    assert any(isinstance(s.op, Select) and s.op.for_update for s in steps)
    assert {s.replied_us - s.sent_us - s.waited_us for s in steps} == {22_000}


def test_unset_network_keys_stay_out_of_a_runs_params():
    assert not any(k.startswith("network.") and k != "network.db_rtt" for k in scenarios.load("seed-fast-jobs").to_toml_table())
