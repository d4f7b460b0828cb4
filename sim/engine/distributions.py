"""Durations and latencies as scenario files state them, and how they are drawn.

A distribution is an inline TOML table in one of three forms (milliseconds):

* ``{ fixed_ms = 50 }``                 always that value
* ``{ min_ms = 10, max_ms = 90 }``       uniform
* ``{ median_ms = 50, p99_ms = 200 }``   log-normal with that median and 99th percentile
  (``p99_ms = median_ms`` makes it fixed)

Randomness is passed in (a ``random.Random``); nothing here reads a clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True)
class Dist:
    """One of the three forms; ``kind`` is 'fixed', 'uniform' or 'lognormal'."""

    kind: str
    a: float
    b: float = 0.0
    sigma: float = field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "lognormal" and self.b > self.a:
            object.__setattr__(self, "sigma", math.log(self.b / self.a) / Z99)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a * math.exp(self.sigma * rng.gauss(0.0, 1.0))

    @property
    def typical(self) -> float:
        """The median, for summaries."""
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def to_toml(self) -> dict[str, float]:
        if self.kind == "fixed":
            return {"fixed_ms": self.a}
        if self.kind == "uniform":
            return {"min_ms": self.a, "max_ms": self.b}
        return {"median_ms": self.a, "p99_ms": self.b}

    def with_field(self, field: str, value: float) -> Dist:
        """A copy with one TOML field changed (``median_ms``...), for parameter grids."""
        table = self.to_toml()
        if field not in table:
            raise KeyError(field)
        table[field] = value
        return parse_dist(table)


#: The longest time a distribution may name: a day, in milliseconds.
MAX_MS = 86_400_000.0

FORMS = "{ fixed_ms = X }, { min_ms = A, max_ms = B } or { median_ms = M, p99_ms = P }"


def parse_dist(table: object) -> Dist:
    """A :class:`Dist` from its TOML table; ``ValueError`` with a one-line reason otherwise."""
    if not isinstance(table, dict):
        raise ValueError(f"must be a table: {FORMS}")
    keys = set(table)
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a number (got {value!r})")
        if value > MAX_MS:
            raise ValueError(f"{key} must be <= {MAX_MS:.0f} (a day; got {value:g})")
    if keys == {"fixed_ms"}:
        if table["fixed_ms"] < 0:
            raise ValueError(f"fixed_ms must be >= 0 (got {table['fixed_ms']})")
        return Dist("fixed", float(table["fixed_ms"]))
    if keys == {"min_ms", "max_ms"}:
        lo, hi = float(table["min_ms"]), float(table["max_ms"])
        if lo < 0 or hi < lo:
            raise ValueError(f"needs 0 <= min_ms <= max_ms (got min_ms={lo:g}, max_ms={hi:g})")
        return Dist("uniform", lo, hi)
    if keys == {"median_ms", "p99_ms"}:
        median, p99 = float(table["median_ms"]), float(table["p99_ms"])
        if median <= 0:
            raise ValueError(f"median_ms must be > 0 (got {median:g})")
        if p99 < median:
            raise ValueError(f"p99_ms must be >= median_ms (got p99_ms={p99:g}, median_ms={median:g})")
        return Dist("lognormal", median, p99)
    raise ValueError(f"has keys {sorted(keys)}; allowed forms: {FORMS}")


# --- signed ranges: clock offsets, steps and drift ---------------------------------------------

#: The forms of a signed range, per unit family (a clock can be behind: values may be negative).
SIGNED_FORMS = {
    "ms": "{ fixed_ms = X }, { min_ms = A, max_ms = B }, { fixed_s = X } or { min_s = A, max_s = B } (negative = behind)",
    "ppm": "{ fixed_ppm = X } or { min_ppm = A, max_ppm = B }",
}
_SIGNED_UNITS = {"ms": (("ms", 1.0), ("s", 1000.0)), "ppm": (("ppm", 1.0),)}


@dataclass(frozen=True)
class SignedRange:
    """A value drawn uniformly in ``[lo, hi]`` (``lo == hi``: fixed), in milliseconds or ppm;
    unlike :class:`Dist` it may be negative (a clock behind the true time, a step back)."""

    unit: str  # "ms" or "ppm"
    lo: float
    hi: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.lo, self.hi)

    def to_toml(self) -> dict[str, float]:
        if self.lo == self.hi:
            return {f"fixed_{self.unit}": self.lo}
        return {f"min_{self.unit}": self.lo, f"max_{self.unit}": self.hi}


def parse_signed(table: object, unit: str, limit: float) -> SignedRange:
    """A :class:`SignedRange` from its TOML table (``unit`` "ms" also takes seconds), each value
    within ``[-limit, +limit]`` (in ``unit``); ``ValueError`` with a one-line reason otherwise."""
    forms = SIGNED_FORMS[unit]
    if not isinstance(table, dict):
        raise ValueError(f"must be a table: {forms} (got {table!r})")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a number (got {value!r})")
    keys = set(table)
    for suffix, scale in _SIGNED_UNITS[unit]:
        if keys == {f"fixed_{suffix}"}:
            lo = hi = float(table[f"fixed_{suffix}"]) * scale
        elif keys == {f"min_{suffix}", f"max_{suffix}"}:
            lo, hi = float(table[f"min_{suffix}"]) * scale, float(table[f"max_{suffix}"]) * scale
            if hi < lo:
                raise ValueError(f"needs min_{suffix} <= max_{suffix} (got min_{suffix}={table[f'min_{suffix}']:g}, max_{suffix}={table[f'max_{suffix}']:g})")
        else:
            continue
        for value in (lo, hi):
            if abs(value) > limit:
                # every digit: in :g form -3600001 reads -3.6e+06, as the limit does
                raise ValueError(f"must stay within -{_exact(limit)} and +{_exact(limit)} {unit} (got {_exact(value / scale)} {suffix})")
        return SignedRange(unit, lo, hi)
    raise ValueError(f"has keys {sorted(keys)}; allowed forms: {forms}")


def _exact(value: float) -> str:
    """A number with every digit it has: whole ones without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
