"""Fixed-effect (and random-term left side) model matrices with R's column names.

Each variable of the formula (a name or an R call such as ``I(age^2)``) is evaluated by the
R evaluator into a placeholder column; formulaic expands the formula over the placeholders
and builds the matrix; the columns are then renamed to what R's ``model.matrix`` gives.
The state kept in `FixedDesign` encodes new data exactly as the fitted data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError, FormulaError

from .naming import TEMP_NAME, column_name, level_text, r_deparse
from .rexpr import as_factor, evaluate, r_to_python
from .scan import NAME_RE, closing_paren, paren_depths

__all__ = [
    "Variable",
    "FixedDesign",
    "fixed_design",
    "fixed_design_newdata",
    "term_matrix",
    "term_matrix_newdata",
]


@dataclass(frozen=True)
class Variable:
    """One variable of a formula: a column name or an R call (``I(age^2)``)."""

    temp: str                      # column name handed to formulaic
    expr: str                      # R text as written
    name: str                      # R's deparsed name (prefix of coefficient names)
    levels: tuple | None           # None for numeric; factor levels otherwise


@dataclass(frozen=True)
class FixedDesign:
    """A model matrix with R's column names, and what encodes new data the same way."""

    X: np.ndarray
    names: tuple[str, ...]
    model_spec: object
    rhs: str
    variables: tuple[Variable, ...]


def formula_atoms(rhs: str) -> list[tuple[int, int]]:
    """Spans of variables / calls in the formula-level rhs (not operators, 0/1, grouping parens)."""
    paren_depths(rhs, rhs, 0)  # validates parentheses / quotes
    spans, i = [], 0
    while i < len(rhs):
        c = rhs[i]
        if c == "`":
            j = rhs.index("`", i + 1) + 1
            spans.append((i, j))
            i = j
            continue
        m = NAME_RE.match(rhs, i)
        if m and not (i > 0 and (rhs[i - 1].isalnum() or rhs[i - 1] in "._")):
            j = m.end()
            k = j
            while k < len(rhs) and rhs[k].isspace():
                k += 1
            if k < len(rhs) and rhs[k] == "(":
                j = closing_paren(rhs, k) + 1
            if rhs[i:j] != "%in%" and not (i > 0 and rhs[i - 1] == "%"):
                spans.append((i, j))
            i = j
            continue
        i += 1
    return spans


def _to_factor_or_numeric(v, var_name: str):
    """A variable's values as R's model.frame sees them: floats, or a factor and its levels."""
    if isinstance(v, pd.Categorical):
        v = v.remove_unused_categories()  # lme4's model.frame(drop.unused.levels = TRUE)
        return v, tuple(v.categories)
    v = np.asarray(v)
    if v.dtype == bool:
        return pd.Categorical(v, categories=[False, True]), (False, True)
    if np.issubdtype(v.dtype, np.number):
        return v.astype(float), None
    if v.dtype.kind in "OUS":
        cat = as_factor(v)
        return cat, tuple(cat.categories)
    raise DataError(f"cannot use '{var_name}' of type {v.dtype} in a model formula")


def _frame(variables: tuple[Variable, ...], data: pd.DataFrame, fitted: bool) -> pd.DataFrame:
    """The placeholder columns of `variables` on `data` (for new data: the fitted levels)."""
    cols = {}
    for var in variables:
        value, levels = _to_factor_or_numeric(evaluate(var.expr, data), var.name)
        if fitted:
            if (levels is None) != (var.levels is None):
                kind = "numeric" if var.levels is None else "a factor"
                raise DataError(f"'{var.name}' was {kind} when fitting but is not in newdata")
            if levels is not None:
                value = _fitted_levels(var, value)
        cols[var.temp] = value
    return pd.DataFrame(cols, index=pd.RangeIndex(len(data)))


def _fitted_levels(var: Variable, value) -> pd.Categorical:
    """New data's factor values re-encoded with the levels of the fit; unseen levels raise."""
    raw = np.asarray(value, dtype=object)
    present = pd.notna(raw)
    known = set(var.levels)
    unseen = [x for x in pd.unique(raw[present]) if x not in known]
    if unseen:
        raise DataError(
            f"'{var.name}' has level '{level_text(unseen[0])}' in newdata that was not "
            f"seen when fitting (levels: {', '.join(map(level_text, var.levels))})"
        )
    return pd.Categorical(raw, categories=list(var.levels))


def _placeholder_formula(rhs: str, data: pd.DataFrame) -> tuple[str, tuple[Variable, ...]]:
    """`rhs` with each variable replaced by a placeholder name, and the variables."""
    variables: list[Variable] = []
    by_name: dict[str, Variable] = {}
    pieces, last = [], 0
    for a, b in formula_atoms(rhs):
        expr = rhs[a:b]
        name = r_deparse(r_to_python(expr)) if not expr.startswith("`") else expr
        var = by_name.get(name)
        if var is None:
            _, levels = _to_factor_or_numeric(evaluate(expr, data), name)
            var = Variable(TEMP_NAME.format(len(variables)), expr, name, levels)
            variables.append(var)
            by_name[name] = var
        pieces += [rhs[last:a], var.temp]
        last = b
    pieces.append(rhs[last:])
    ftext = "".join(pieces)
    # R orders the variables inside an interaction by first appearance in the formula;
    # temp names are numbered in that order, so sorting `a:b` chains reproduces it.
    ftext = re.sub(
        r"_gbv\d{3}(?:\s*:\s*_gbv\d{3})+",
        lambda m: ":".join(sorted(re.findall(r"_gbv\d{3}", m.group()))),
        ftext,
    )
    return ftext, tuple(variables)


def fixed_design(rhs: str, data: pd.DataFrame) -> FixedDesign:
    """Model matrix of a formula right-hand side (no bars/offsets) with lme4 column names."""
    from formulaic import model_matrix

    ftext, variables = _placeholder_formula(rhs, data)
    frame = _frame(variables, data, fitted=False)
    try:
        mm = model_matrix(ftext, frame, ensure_full_rank=True, na_action="ignore")
    except Exception as e:  # formulaic's own syntax errors
        raise FormulaError(f"cannot build the fixed-effects design for '{rhs}': {e}") from None
    by_temp = {v.temp: v for v in variables}
    names = tuple(column_name(c, by_temp) for c in mm.columns)
    X = np.ascontiguousarray(mm.to_numpy(dtype=float))
    return FixedDesign(X, names, mm.model_spec, rhs, variables)


def fixed_design_newdata(fd: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    """Encode `newdata` exactly as the fitted design (same columns, fit-time factor levels)."""
    frame = _frame(fd.variables, newdata, fitted=True)
    mm = fd.model_spec.get_model_matrix(frame, na_action="ignore")
    X = np.ascontiguousarray(np.asarray(mm, dtype=float))
    if X.shape[1] != len(fd.names):  # pragma: no cover - formulaic keeps the structure
        raise DataError(f"newdata gives {X.shape[1]} columns, expected {len(fd.names)}")
    return X


def term_matrix(lhs: str, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...], FixedDesign]:
    """Model matrix of a random-term left side ("1", "urban", "0 + x"), its names and a state
    for `term_matrix_newdata`."""
    fd = fixed_design(lhs, data)
    return fd.X, fd.names, fd


def term_matrix_newdata(state: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    """The random-term covariates of `newdata`, encoded as when fitting."""
    return fixed_design_newdata(state, newdata)
