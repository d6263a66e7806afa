"""Declared method options, checked once: each method lists its options with a default and a
checker; `check_options` validates a call against the list (and names the methods that do take
an option given to the wrong one)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import SpecError


@dataclass(frozen=True)
class Option:
    """One option of a method: name, default, a checker (value -> normalized value, or
    SpecError), and one line of documentation."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str = ""


def integer(low: int | None = None, high: int | None = None) -> Callable[[str, Any], int]:
    """An integer (numpy integers accepted; bools and floats refused) within [low, high]."""

    def check(name, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
            raise SpecError(f"{name} must be an integer, got {v!r}")
        v = int(v)
        if (low is not None and v < low) or (high is not None and v > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise SpecError(f"{name} must be an integer {bounds}, got {v!r}")
        return v

    return check


def number(low: float | None = None, *, open_low: bool = False, high: float | None = None) -> Callable:
    """A finite real number within the given bounds."""

    def check(name, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            raise SpecError(f"{name} must be a number, got {v!r}")
        v = float(v)
        bad = not np.isfinite(v) or (low is not None and (v <= low if open_low else v < low)) or (
            high is not None and v > high)
        if bad:
            rel = ">" if open_low else ">="
            rng = "" if low is None else f" {rel} {low}" + ("" if high is None else f" and <= {high}")
            raise SpecError(f"{name} must be a finite number{rng}, got {v!r}")
        return v

    return check


def choice(*values) -> Callable[[str, Any], Any]:
    def check(name, v):
        if v not in values:
            raise SpecError(f"{name} must be one of {', '.join(map(repr, values))}, got {v!r}")
        return v

    return check


def optional(inner: Callable) -> Callable:
    def check(name, v):
        return None if v is None else inner(name, v)

    return check


def boolean(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise SpecError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def anything(name, v):
    return v


def check_options(method: str, declared: tuple[Option, ...], given: Mapping[str, Any],
                  elsewhere: Mapping[str, list[str]]) -> dict[str, Any]:
    """Defaults filled in, every given option checked; unknown names raise a SpecError that
    says which methods take them (`elsewhere`: option name -> methods declaring it)."""
    names = {o.name for o in declared}
    unknown = [k for k in given if k not in names]
    if unknown:
        k = unknown[0]
        if k in elsewhere:
            owners = " or ".join(f"'{m}'" for m in elsewhere[k])
            raise SpecError(f"{k} applies to method={owners}, not to method={method!r}")
        raise SpecError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
            f"method={method!r}; its options are: {', '.join(sorted(names)) or '(none)'}"
        )
    return {o.name: (o.check(o.name, given[o.name]) if o.name in given else o.default) for o in declared}
