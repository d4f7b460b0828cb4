"""The built-in strategies' names and where each lives (``module:attr``), without loading them:
the command line's help and choices need the names only (``tracker.strategies`` loads them).

Imports nothing."""

from __future__ import annotations

BUILTIN = {
    "naive": "tracker.strategies.naive:STRATEGY",
    "three-layer": "tracker.strategies.three_layer:STRATEGY",
    "atomic": "tracker.strategies.atomic:STRATEGY",
    "row-lock": "tracker.strategies.row_lock:STRATEGY",
    "db-clock": "tracker.strategies.db_clock:STRATEGY",
}
