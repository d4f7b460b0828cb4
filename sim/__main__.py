"""``python -m sim`` is the ``racetrack`` command."""

from sim.cli import entry

entry()
