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
    """``reading = EPOCH + t + offset + drift * t`` (``+ step`` once ``t >= step_at``), cut to the
    host's resolution."""

    host: str
    offset_us: int
    drift_ppm: float
    resolution_us: int  # 1000 for JavaScript's Date.now(), 1 for PostgreSQL
    #: An NTP step: from true time ``step_at_us`` on, readings jump by ``step_us`` (0: never).
    step_at_us: int = 0
    step_us: int = 0

    def read(self, true_us: int) -> int:
        raw = EPOCH_US + true_us + self.offset_us + int(self.drift_ppm * true_us / 1_000_000)
        if self.step_us and true_us >= self.step_at_us:
            raw += self.step_us
        return raw - raw % self.resolution_us

    def error_bound_us(self, horizon_us: int) -> int:
        """The most this clock can be off at any time up to ``horizon_us`` (plus resolution)."""
        return (
            abs(self.offset_us) + int(abs(self.drift_ppm) * horizon_us / 1_000_000) + self.resolution_us
            + (abs(self.step_us) if self.step_at_us <= horizon_us else 0)
        )
