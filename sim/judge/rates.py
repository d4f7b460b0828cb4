"""Violation rates with their uncertainty: the Wilson score interval, a pure function.

Shared by the reports (``reports.stats``) and live-vs-simulated calibration (``sim.live``), which
may not import the reports. Imports only the standard library.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials (``(nan, nan)`` for n = 0).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at k = 0 or
    k = n: 0 of 20 gives [0, 0.161], not [0, 0].
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if k == 0:
        low = 0.0  # exact: rounding must not leave a hair above zero
    if k == n:
        high = 1.0
    return (low, high)
