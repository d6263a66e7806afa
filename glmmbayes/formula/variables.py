"""The variables of a formula: what each evaluates to on the fitted data and on new data.

A variable is a column name or an R call (``I(age^2)``, ``factor(n)``, ``scale(x)``).  On
the fitted data it is classified as R's ``model.frame`` would: numbers are numeric (one
column, or several for ``poly``), text, logicals and Categoricals are factors with their
levels (unused ones dropped, as lme4 does).  On new data the fitted classification is
enforced: factor values are matched to the fitted levels (by value, then by R's text of the
value, so integers 1..15 match levels '1'..'15'); a column of another type, or an unseen
level, is a DataError that says what the fit had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError

from .naming import level_text, r_deparse
from .rexpr import as_factor, as_number, evaluate, r_to_python
from .scan import NAME_RE
from .transforms import StatefulCall, apply_stateful, parse_stateful

__all__ = ["Variable", "fit_variable", "variable_values", "describe_values", "used_codes"]


@dataclass(frozen=True)
class Variable:
    """One variable of a formula and how it was encoded when fitting."""

    expr: str                      # R text as written
    name: str                      # R's deparsed name (prefix of coefficient names)
    levels: tuple | None           # factor levels; None for a numeric variable
    suffixes: tuple[str, ...]      # numeric: one name suffix per column ("" for a single one)
    origin: str                    # what the fitted values were ("integers", "strings", ...)
    call: StatefulCall | None = None
    state: dict = field(default_factory=dict, compare=False, repr=False)
    ordered: bool = False          # an ordered factor: R codes it by polynomial contrasts

    @property
    def is_factor(self) -> bool:
        return self.levels is not None


def describe_values(v) -> str:
    """What an evaluated variable holds, for messages: 'a factor', 'strings', 'integers', ..."""
    if isinstance(v, pd.Categorical):
        return "a factor"
    a = np.asarray(v)
    if a.dtype == bool or (a.dtype == object and all(isinstance(x, (bool, np.bool_)) for x in a[pd.notna(a)])):
        return "logical values"
    if a.dtype.kind in "iuf":
        finite = a[np.isfinite(a)]
        return "integers" if np.all(finite == np.round(finite)) else "numbers"
    if a.dtype.kind in "OUS":
        return "strings"
    return f"values of type {a.dtype}"


def _family(description: str) -> str:
    """The R class a description belongs to: factor, logical or numeric."""
    return {"logical values": "logical", "integers": "numeric", "numbers": "numeric"}.get(description, "factor")


def fit_variable(expr: str, data: pd.DataFrame) -> tuple[Variable, np.ndarray]:
    """Classify `expr` on the fitted `data`; its values: (n, k) floats, or (n,) level codes."""
    name = r_deparse(r_to_python(expr))
    call = parse_stateful(expr)
    if call is not None:
        arg = evaluate(call.arg, data)
        if _family(describe_values(arg)) != "numeric":
            raise DataError(f"{call.func}() needs a numeric variable, but '{call.arg}' in '{name}' is {describe_values(arg)}")
        state: dict = {}
        M = apply_stateful(call, arg, state, name)
        suffixes = ("",) if M.shape[1] == 1 else tuple(str(k + 1) for k in range(M.shape[1]))
        return Variable(expr, name, None, suffixes, "numbers", call, state), M
    v = evaluate(expr, data)
    origin = describe_values(v)
    if isinstance(v, pd.Categorical):
        levels, codes = _categorical_levels(v)
        return Variable(expr, name, levels, (), origin, ordered=bool(v.ordered)), codes
    levels = _fitted_levels(v, name, origin)
    var = Variable(expr, name, levels, () if levels is not None else ("",), origin)
    if levels is None:
        return var, np.asarray(v, dtype=np.float64).reshape(-1, 1)
    return var, _codes_by_value(v, levels)


def used_codes(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the used ones of `size` categories in their order, each code's index among them; -1
    stays -1 for a missing value): lme4's drop.unused.levels by a count, no sort and no
    lookup of values."""
    codes = np.asarray(codes, dtype=np.int64)
    used = np.bincount(codes[codes >= 0], minlength=size) > 0
    rank = np.append(np.cumsum(used) - 1, -1)  # a missing value's code -1 picks the last: -1
    return np.flatnonzero(used), rank[codes]


def _categorical_levels(v: pd.Categorical) -> tuple[tuple, np.ndarray]:
    """(the used categories in their order, each row's index among them, -1 where missing)."""
    used, codes = used_codes(v.codes, len(v.categories))
    return tuple(v.categories[used]), codes


def _fitted_levels(v, name: str, origin: str) -> tuple | None:
    """Factor levels as lme4's model.frame makes them (None for numbers; not for a
    Categorical, `_categorical_levels`)."""
    if origin == "logical values":
        return (False, True)  # R's model.matrix: logicals are factor(x, levels = c(FALSE, TRUE))
    if origin in ("integers", "numbers"):
        return None
    if origin == "strings":
        return tuple(as_factor(v).categories)
    raise DataError(f"cannot use '{name}' ({origin}) in a model formula")


def _codes_by_value(v, levels: tuple) -> np.ndarray:
    """Level index of each value (-1 where missing or not a level)."""
    raw = np.asarray(v, dtype=object)
    index = pd.Index(list(levels), dtype=object)
    codes = index.get_indexer(raw)
    codes[~pd.notna(raw)] = -1
    return codes.astype(np.int64)


def variable_values(var: Variable, data: pd.DataFrame) -> np.ndarray:
    """`var` on new data, encoded as when fitting: (n, k) floats or (n,) level codes."""
    v = evaluate(var.call.arg if var.call is not None else var.expr, data)
    new = describe_values(v)
    if var.is_factor:
        return _match_levels(var, v, new)
    if _family(new) == "factor":
        what = f"'{var.call.arg}' in '{var.name}'" if var.call is not None else f"'{var.name}'"
        raise DataError(f"{what} was numeric when fitting but newdata has {new}; {_hint(var)}")
    if var.call is not None:
        return apply_stateful(var.call, as_number(v), var.state, var.name)
    return as_number(v).reshape(-1, 1)


def _match_levels(var: Variable, v, new: str) -> np.ndarray:
    """Codes of new factor values: by value, else by R's text of the value (1 -> '1')."""
    raw = np.asarray(v, dtype=object)
    present = pd.notna(raw)
    codes = _codes_by_value(raw, var.levels)
    by_text = {level_text(lv): i for i, lv in enumerate(var.levels)}
    for i in np.flatnonzero(present & (codes < 0)):
        codes[i] = by_text.get(level_text(raw[i]), -1)
    unseen = present & (codes < 0)
    if not unseen.any():
        return codes
    if not (present & ~unseen).any() and _family(new) != _family(var.origin):
        raise DataError(
            f"'{var.name}' was {_fitted_kind(var)} when fitting but newdata has {new} that match none "
            f"of its levels; {_hint(var)}"
        )
    first = raw[np.flatnonzero(unseen)[0]]
    retype = ""
    if _family(new) != _family(var.origin):  # e.g. codes 0..3 for levels '0', '1', '2', '3+'
        retype = f"; newdata has {new} where the fit had {_fitted_kind(var)}: {_hint(var)}"
    raise DataError(
        f"'{var.name}' has level '{level_text(first)}' in newdata that was not "
        f"seen when fitting (levels: {', '.join(map(level_text, var.levels))}){retype}"
    )


def _fitted_kind(var: Variable) -> str:
    """'a factor (levels 'a', 'b', ...)' or 'logical (FALSE/TRUE)'."""
    if var.origin == "logical values":
        return "logical (FALSE/TRUE)"
    shown = ", ".join(f"'{level_text(lv)}'" for lv in var.levels[:5])
    more = f", ... ({len(var.levels)} in all)" if len(var.levels) > 5 else ""
    return f"a factor (levels {shown}{more})"


def _column_of(expr: str) -> str | None:
    """The data column `expr` is, if it is a bare (possibly backquoted) name."""
    name = expr.strip()
    if NAME_RE.fullmatch(name) or (len(name) > 1 and name[0] == name[-1] == "`"):
        return name.strip("`")
    return None


def _hint(var: Variable) -> str:
    """How to convert the newdata column to the fitted type."""
    col = _column_of(var.call.arg if var.call is not None else var.expr)
    if var.is_factor:
        target = "True/False" if var.origin == "logical values" else "the fitted levels (strings or a pandas Categorical)"
        where = f"newdata['{col}']" if col else f"the columns of '{var.expr}'"
        return f"give {where} as {target}"
    if col:
        return f"convert it with pd.to_numeric(newdata['{col}'])"
    return f"convert the columns of '{var.expr}' to numbers"
