"""The default limits (``sim.engine.limits.Limits``' defaults), without the dataclass: the command
line's help and defaults need the numbers only, and ``racetrack --help`` must not pay for
``dataclasses`` (see docs/performance.md, the quick commands).

Imports nothing."""

#: Operations (statements, sleeps, clock reads) one handler may yield.
OPS_PER_HANDLER = 10_000
#: Simulated seconds one run may last (a retry's backoff counts).
SIM_SECONDS = 30 * 86_400.0
#: Wall-clock seconds one run may take (a handler stuck in a CPU loop).
WALL_SECONDS = 300.0

#: The largest seed a run may have (results files keep it as an int64): the command line's
#: bound for the last run's seed, and a trace's.
MAX_SEED = 2**63 - 1
