"""Declared ranges of configuration values: one checker and one wording for every object that declares
them (strategy hyperparameters through ``cl_bench.strategy.hparam``, the protocol in
``cl_bench.trainer.Protocol``, scenario options through ``cl_bench.registry.option_ranges``).

Types are parsed before, by cl_bench.values; a ``Range`` only says whether a typed value is allowed,
so a bad value is an error naming the setting, the value and the valid range before any work runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """Bounds of a number (each optional; a bounded number must also be finite), or the choices of a
    value. ``optional``: None is allowed too (a setting whose None means "automatic")."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def __post_init__(self):
        if self.at_least is not None and self.above is not None or self.at_most is not None and self.below is not None:
            raise ValueError("a range takes one lower bound (at_least or above) and one upper (at_most or below)")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def __str__(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ``one of 'a', 'b'``: what ``cl-bench list`` shows."""
        return f"none or {self._bounds()}" if self.optional else self._bounds()

    def expected(self, kind: type | None = None) -> str:
        """What a valid value is, in words: ``an integer >= 1``, ``a finite number in [0, 1)``."""
        text = self._bounds()
        if self.choices is None:
            what = "an integer" if kind is int else "a finite number"
            text = what if text == "finite" else f"{what} {text}"
        return f"none or {text}" if self.optional else text

    def _bounds(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low = self.at_least if self.at_least is not None else self.above
        high = self.at_most if self.at_most is not None else self.below
        if low is not None and high is not None:
            return (
                f"in {'[' if self.at_least is not None else '('}{_number(low)}, "
                f"{_number(high)}{']' if self.at_most is not None else ')'}"
            )
        if low is not None:
            return f"{'>=' if self.at_least is not None else '>'} {_number(low)}"
        if high is not None:
            return f"{'<=' if self.at_most is not None else '<'} {_number(high)}"
        return "finite"

    def contains(self, value: Any, kind: type | None = None) -> bool:
        """Whether ``value`` is allowed; ``kind`` int also requires an int (never a bool)."""
        if value is None:
            return self.optional
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # inf, NaN: never a meaningful setting
            return False
        return (
            (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.at_most is None or value <= self.at_most)
            and (self.below is None or value < self.below)
        )

    def check(self, value: Any, name: str, kind: type | None = None, error: type[Exception] = ValueError) -> None:
        """Raise ``error`` "<name> must be <expected>, got <value>" unless ``value`` is allowed."""
        if not self.contains(value, kind):
            raise error(f"{name} must be {self.expected(kind)}, got {value!r}")


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"
