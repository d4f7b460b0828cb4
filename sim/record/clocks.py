"""Host clocks: each host reads true (simulated) time through its own offset and drift.

True simulated time is integer microseconds since the run began; :data:`EPOCH_US` pins the run's
start to a fixed instant so readings look like real timestamps. Never reads the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

#: 2025-10-12T16:36:52Z, the seed's failing run: a fixed instant, never the wall clock.
EPOCH_US = 1_760_287_012_000_000


@dataclass(frozen=True)
class Clock:
    """``reading = EPOCH + t + offset + drift * t``, cut to the host's resolution."""

    host: str
    offset_us: int
    drift_ppm: float
    resolution_us: int  # 1000 for JavaScript's Date.now(), 1 for PostgreSQL

    def read(self, true_us: int) -> int:
        raw = EPOCH_US + true_us + self.offset_us + int(self.drift_ppm * true_us / 1_000_000)
        return raw - raw % self.resolution_us

    def error_bound_us(self, horizon_us: int) -> int:
        """The most this clock can be off at any time up to ``horizon_us`` (plus resolution)."""
        return abs(self.offset_us) + int(abs(self.drift_ppm) * horizon_us / 1_000_000) + self.resolution_us
