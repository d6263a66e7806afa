"""Stateful transforms of a formula term: ``scale(x)``, ``center(x)``, ``poly(x, 2)``.

Their result depends on the data they were fitted on (a mean, a scale, the coefficients of
orthogonal polynomials), so a prediction on new data must reuse the fitted values -- R
does so through ``makepredictcall``, formulaic through a transform state.  The arithmetic is
formulaic's (its ``poly`` is R's three-term recurrence, so the columns equal R's ``poly()``
including the sign); the state dict it fills on the fitted data is kept by the variable and
handed back for new data.  The argument of a transform is an R expression (``scale(log(x))``)
evaluated by `rexpr.evaluate`; the other arguments must be constants.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np

from glmmbayes.errors import DataError, FormulaError

from .rexpr import TERM_ONLY_FUNCS, r_to_python
from .scan import closing_paren, split_top, strip_span

__all__ = ["StatefulCall", "parse_stateful", "apply_stateful"]

# R's argument names after the variable, in positional order
_SIGNATURES = {"scale": ("center", "scale"), "center": (), "poly": ("degree", "raw")}


@dataclass(frozen=True)
class StatefulCall:
    """``func(arg, name = constant, ...)``: the R text of the variable and the constants."""

    func: str
    arg: str
    kwargs: tuple[tuple[str, object], ...]

    @property
    def ncol(self) -> int:
        return int(dict(self.kwargs).get("degree", 1)) if self.func == "poly" else 1


def parse_stateful(expr: str) -> StatefulCall | None:
    """The stateful call `expr` is (``poly(age, 2)``), None if it is not one."""
    m = re.match(r"\s*([A-Za-z.][A-Za-z0-9._]*)\s*\(", expr)
    if not m or m.group(1) not in TERM_ONLY_FUNCS or closing_paren(expr, m.end() - 1) != len(expr.rstrip()) - 1:
        return None
    func, base = m.group(1), m.end()
    inner = expr[base : len(expr.rstrip()) - 1]
    args = []
    for _, a, b in split_top(inner, ",", expr, base):
        a, b = strip_span(inner, a, b)
        if a == b:
            raise FormulaError(f"empty argument in {func}()", expr, base + a)
        args.append(inner[a:b])
    if not args:
        raise FormulaError(f"{func}() needs a variable", expr, base)
    return StatefulCall(func, args[0], _constants(func, args[1:], expr))


def _constants(func: str, args: list[str], expr: str) -> tuple[tuple[str, object], ...]:
    """The arguments after the variable as (name, Python constant), matched as R does:
    named ones by name, the others in order of R's signature."""
    names = _SIGNATURES[func]
    named, positional = {}, []
    for text in args:
        m = re.fullmatch(r"([A-Za-z.][A-Za-z0-9._]*)\s*=(?!=)\s*(.+)", text, flags=re.S)
        if m:
            named[m.group(1)] = m.group(2)
        else:
            positional.append(text)
    for name in named:
        if name not in names:
            raise DataError(f"{func}() in '{expr}': unsupported argument '{name}'; {_takes(func)}")
    free = [n for n in names if n not in named]
    if len(positional) > len(free):
        raise DataError(f"{func}() in '{expr}': too many arguments; {_takes(func)}")
    out = {}
    for name, value in [*zip(free, positional), *named.items()]:
        try:
            out[name] = ast.literal_eval(r_to_python(value))
        except (ValueError, SyntaxError, FormulaError):
            several = func == "poly" and value in positional
            raise DataError(
                f"{func}() in '{expr}': " + ("polynomials of several variables are not supported; "
                f"{_takes(func)}" if several else f"argument '{name}' must be a constant, got {value!r}")
            ) from None
    return _checked_degree(out, expr)


def _takes(func: str) -> str:
    names = _SIGNATURES[func]
    return f"{func}() takes one variable" + (f" and {', '.join(names)}" if names else "")


def _checked_degree(out: dict, expr: str) -> tuple[tuple[str, object], ...]:
    """poly()'s degree as an int >= 1."""
    if "degree" in out:
        degree = out["degree"]
        if isinstance(degree, bool) or not isinstance(degree, (int, float)) or degree < 1 or degree != int(degree):
            raise DataError(f"poly() in '{expr}': 'degree' must be a whole number >= 1, got {degree!r}")
        out["degree"] = int(degree)
    return tuple(out.items())


def apply_stateful(call: StatefulCall, values: np.ndarray, state: dict, name: str) -> np.ndarray:
    """The (n, ncol) columns of `call` on the numeric `values` of its variable.  An empty
    `state` is filled from `values` (fitting); a filled one is reused, so new data get the
    fitted centre, scale or polynomial coefficients and the fitted rows reproduce the
    fitted columns exactly."""
    from formulaic.transforms import TRANSFORMS

    values = np.asarray(values, dtype=np.float64)
    if not state and call.func == "poly" and not dict(call.kwargs).get("raw", False):
        unique = len(np.unique(values[~np.isnan(values)]))
        if call.ncol >= unique:
            raise DataError(
                f"'{name}': 'degree' must be less than number of unique points ({unique} in the data)"
            )
    out = np.asarray(TRANSFORMS[call.func](values, **dict(call.kwargs), _state=state), dtype=np.float64)
    return out.reshape(len(values), -1)
