"""Argument checks shared by the package and its scripts: one ValueError wording for all.

Each check returns the value when it is what the caller documented and otherwise raises
a ValueError that says what was expected and what was given, before any work is done.
Used by `vit_course.config`, `vit_course.data`, `vit_course.train` and
`scripts/train_fashion.py`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """`value` if it is an int (not a bool, not a float) at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float if it is a finite real number within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)
