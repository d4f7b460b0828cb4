"""The backends a run can use (``sim.runs.backends``), without that module's dataclass: the
command line's ``--backend`` choices need the names only, and ``racetrack --help`` must not pay
for ``dataclasses`` (see docs/performance.md, the quick commands).

Imports nothing."""

KINDS = ("memory", "postgres", "both")
