"""Integer distributions given on the command line: sequence lengths, sequences per request.

Syntax (``parse_int_distribution``):

* ``"50"``: always 50;
* ``"10:200"``: uniform over the integers 10..200, both ends included;
* ``"16,64,128"``: one of the listed values, each equally likely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntDistribution:
    """A distribution over positive integers; ``sample`` draws from a numpy ``Generator``."""

    kind: str
    """``fixed``, ``uniform`` or ``choice``."""
    values: tuple[int, ...]
    """fixed: ``(v,)``; uniform: ``(low, high)`` inclusive; choice: the values."""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws as an int64 array."""
        if self.kind == "fixed":
            return np.full(size, self.values[0], dtype=np.int64)
        if self.kind == "uniform":
            low, high = self.values
            return rng.integers(low, high + 1, size=size, dtype=np.int64)
        return rng.choice(np.array(self.values, dtype=np.int64), size=size)

    @property
    def low(self) -> int:
        return min(self.values)

    @property
    def high(self) -> int:
        return max(self.values)

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.values[0] + self.values[1]) / 2
        return float(np.mean(self.values))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(self.values[0])
        if self.kind == "uniform":
            return f"U[{self.values[0]},{self.values[1]}]"
        return "{" + ",".join(map(str, self.values)) + "}"


def _positive(text: str, spec: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{spec!r}: {text.strip()!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{spec!r}: values must be at least 1, got {value}")
    return value


def parse_int_distribution(spec: str) -> IntDistribution:
    """``"N"``, ``"LOW:HIGH"`` or ``"A,B,C"`` as an ``IntDistribution`` (``ValueError`` if not)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty distribution: use N, LOW:HIGH or A,B,C")
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 2:
            raise ValueError(f"{spec!r}: a uniform range is LOW:HIGH")
        low, high = (_positive(p, spec) for p in parts)
        if low > high:
            raise ValueError(f"{spec!r}: LOW must not exceed HIGH")
        return (
            IntDistribution("fixed", (low,))
            if low == high
            else IntDistribution("uniform", (low, high))
        )
    if "," in spec:
        values = tuple(_positive(p, spec) for p in spec.split(","))
        return IntDistribution("choice", values)
    return IntDistribution("fixed", (_positive(spec, spec),))
