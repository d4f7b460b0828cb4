"""Fixtures the test modules share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dsn() -> str:
    """The server the PostgreSQL backend would use (``DATABASE_URL``, ``PG*``, else an embedded
    one it starts), one per module. A server that cannot be reached fails the test: the tests
    that need PostgreSQL are the ones that matter, so they never skip for want of one."""
    from tracker.pg_server import choose_server

    return choose_server().dsn
