"""Fixed-effect (and random-term left side) model matrices, built as R's model.matrix does.

Each variable of the formula (a name or an R call such as ``I(age^2)``, ``poly(age, 2)``)
is replaced by a placeholder name; formulaic expands the operators over the placeholders
and `terms` turns that into R's ordered, coded terms; `variables` evaluates each variable
once.  A term's columns are the products of its variables' columns (the first variable
varying fastest), named as R names them.  `FixedDesign` keeps the fitted encoding (factor
levels, transform states), so new data are encoded exactly as the fitted data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError

from .naming import interaction_names, level_text, r_deparse
from .rexpr import r_to_python, referenced_columns
from .scan import NAME_RE, closing_paren, paren_depths
from .terms import TermStructure, term_structure
from .variables import Variable, fit_variable, variable_values

__all__ = [
    "FixedDesign",
    "formula_atoms",
    "formula_columns",
    "fixed_design",
    "fixed_design_newdata",
    "term_matrix",
    "term_matrix_newdata",
]

_PLACEHOLDER = "_gbv{:03d}"


@dataclass(frozen=True)
class FixedDesign:
    """A model matrix with R's column names, and what encodes new data the same way."""

    X: np.ndarray
    names: tuple[str, ...]
    structure: TermStructure
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


def formula_columns(rhs: str, data: pd.DataFrame) -> list[str]:
    """The data columns the variables of a formula right-hand side refer to."""
    out: list[str] = []
    for a, b in formula_atoms(rhs):
        out += [c for c in referenced_columns(rhs[a:b], data) if c not in out]
    return out


def _fit_variables(rhs: str, data: pd.DataFrame) -> tuple[str, list[Variable], list[np.ndarray]]:
    """`rhs` with each variable replaced by a placeholder (numbered by first appearance; a
    variable written twice is one variable), the variables and their values on `data`."""
    variables: list[Variable] = []
    values: list[np.ndarray] = []
    index: dict[str, int] = {}
    pieces, last = [], 0
    for a, b in formula_atoms(rhs):
        expr = rhs[a:b]
        name = r_deparse(r_to_python(expr))
        if name not in index:
            var, vals = fit_variable(expr, data)
            index[name] = len(variables)
            variables.append(var)
            values.append(vals)
        pieces += [rhs[last:a], _PLACEHOLDER.format(index[name])]
        last = b
    pieces.append(rhs[last:])
    return "".join(pieces), variables, values


def fixed_design(rhs: str, data: pd.DataFrame) -> FixedDesign:
    """Model matrix of a formula right-hand side (no bars/offsets) with lme4 column names."""
    ftext, variables, values = _fit_variables(rhs, data)
    placeholders = {_PLACEHOLDER.format(i): i for i in range(len(variables))}
    structure = term_structure(ftext, placeholders, [v.is_factor for v in variables], rhs)
    X, names = _assemble(structure, variables, values, len(data))
    X.setflags(write=False)  # the fitted matrix is kept as state: nothing may edit it
    return FixedDesign(X, names, structure, rhs, tuple(variables))


def fixed_design_newdata(fd: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    """Encode `newdata` exactly as the fitted design (same columns, fit-time factor levels
    and transform states); missing values give NaN in the columns they enter."""
    values = [variable_values(v, newdata) for v in fd.variables]
    X, names = _assemble(fd.structure, fd.variables, values, len(newdata))
    if names != fd.names:  # pragma: no cover - the fitted encoding fixes the columns
        raise DataError(f"newdata gives columns {names}, expected {fd.names}")
    return X


def _assemble(structure: TermStructure, variables, values, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The model matrix and its column names: intercept, then each term's columns."""
    cols: list[np.ndarray] = [np.ones(n)] if structure.intercept else []
    names: list[str] = ["(Intercept)"] if structure.intercept else []
    for term in structure.terms:
        parts = [
            _variable_columns(variables[v], values[v], contrasts)
            for v, contrasts in zip(term.variables, term.contrasts)
        ]
        names += interaction_names([[nm for nm, _ in p] for p in parts])
        cols += _interaction_values([[c for _, c in p] for p in parts])
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return np.ascontiguousarray(X, dtype=np.float64), tuple(names)


def _variable_columns(var: Variable, vals: np.ndarray, contrasts: bool) -> list[tuple[str, np.ndarray]]:
    """(name, column) of one variable in a term: its numeric columns, or one indicator per
    level (the first level left out when coded by treatment contrasts)."""
    if not var.is_factor:
        return [(var.name + s, vals[:, k]) for k, s in enumerate(var.suffixes)]
    missing = vals < 0
    if var.ordered and contrasts:  # R's default for an ordered factor: contr.poly
        Z = contr_poly(len(var.levels))
        cols = Z[np.where(missing, 0, vals)]
        cols[missing] = np.nan
        return [(var.name + nm, cols[:, j]) for j, nm in enumerate(poly_contrast_names(Z.shape[1]))]
    out = []
    for i in range(1 if contrasts else 0, len(var.levels)):
        col = (vals == i).astype(np.float64)
        col[missing] = np.nan
        out.append((var.name + level_text(var.levels[i]), col))
    return out


def contr_poly(k: int) -> np.ndarray:
    """R's contr.poly(k): orthonormal polynomials in the level scores 1..k, degrees 1..k-1
    (the columns of the Gram-Schmidt basis of the centred powers, as R's make.poly)."""
    y = np.arange(1.0, k + 1.0) - (k + 1.0) / 2.0
    Q, R = np.linalg.qr(y[:, None] ** np.arange(k)[None, :])
    return (Q * np.sign(np.diag(R)))[:, 1:]


def poly_contrast_names(m: int) -> list[str]:
    """R's names of polynomial contrast columns: .L, .Q, .C, ^4, ^5, ..."""
    return [".L", ".Q", ".C"][:m] + [f"^{d}" for d in range(4, m + 1)]


def _interaction_values(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Products of one column per variable, in the order of `naming.interaction_names`."""
    out: list = [None]
    for cols in parts:
        out = [c if prev is None else prev * c for c in cols for prev in out]
    return out


def term_matrix(lhs: str, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...], FixedDesign]:
    """Model matrix of a random-term left side ("1", "urban", "0 + x"), its names and a state
    for `term_matrix_newdata`."""
    fd = fixed_design(lhs, data)
    return fd.X, fd.names, fd


def term_matrix_newdata(state: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    """The random-term covariates of `newdata`, encoded as when fitting."""
    return fixed_design_newdata(state, newdata)
