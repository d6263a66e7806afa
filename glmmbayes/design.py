"""`Design`: a Spec evaluated on a DataFrame -- X, y, trials/weights, offset and the RE terms.

All data checks that can name a column, row or term live here, so that the numerical core
only ever sees clean arrays.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import formula as fm
from .core.linalg import ReStructure, theta_diag_mask
from .core.pirls import Problem
from .errors import DataError, RankDeficiencyWarning, SpecError
from .families import Family, show_value
from .spec import Spec


@dataclass(frozen=True)
class ReTerm:
    """One random-effect term (lhs | group): b_j = T u_j for each level j of the group."""

    group_name: str  # lme4's grp name ("herd", "g1:g2"; ".1" added for repeated names)
    group_vars: tuple[str, ...]
    lhs: str
    coef_names: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray  # (n,) level index of each row
    X: np.ndarray  # (n, k) the term's covariates
    lhs_state: object = field(repr=False)

    @property
    def k(self) -> int:
        return self.X.shape[1]

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.k * (self.k + 1) // 2

    @property
    def theta_names(self) -> tuple[str, ...]:
        cols, rows = np.triu_indices(self.k)
        g, c = self.group_name, self.coef_names
        return tuple(f"{g}.{c[r]}" if r == cl else f"{g}.{c[r]}.{c[cl]}" for r, cl in zip(rows, cols))

    def __str__(self) -> str:
        return f"({self.lhs} | {':'.join(self.group_vars)})"


@dataclass(frozen=True)
class Design:
    spec: Spec
    X: np.ndarray
    fixef_names: tuple[str, ...]
    y: np.ndarray  # response (proportion for binomial)
    wt: np.ndarray  # prior weights (trials for binomial)
    offset: np.ndarray
    terms: tuple[ReTerm, ...]  # ordered by decreasing number of levels, as lme4
    rows: np.ndarray  # positions of the used rows in the original data
    n_omitted: int
    dropped: tuple[str, ...]  # fixed-effect columns dropped for rank deficiency
    response_name: str
    fixed_state: object = field(repr=False)
    structure: ReStructure = field(repr=False)
    index: pd.Index | None = field(default=None, repr=False)  # the data's index labels of the used rows

    @property
    def row_index(self) -> pd.Index:
        """Index labels of the used rows, so fitted values/residuals align with the user's data."""
        return self.index if self.index is not None else pd.Index(self.rows)

    @property
    def family(self) -> Family:
        return self.spec.fam

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def theta_names(self) -> tuple[str, ...]:
        return tuple(nm for t in self.terms for nm in t.theta_names)

    @property
    def dispersion_estimated(self) -> bool:
        """The family has a dispersion φ and the spec does not fix it."""
        return self.family.has_dispersion and self.spec.known_dispersion is None

    @property
    def fixed_phi(self) -> float:
        """φ when it is not estimated: the spec's known dispersion, else 1."""
        return 1.0 if self.spec.known_dispersion is None else float(self.spec.known_dispersion)

    @property
    def theta_lower(self) -> np.ndarray:
        return self.structure.theta_lower

    @property
    def ngrps(self) -> dict[str, int]:
        return {t.group_name: t.nlevels for t in self.terms}

    def with_response(self, y, wt=None) -> "Design":
        """The same design with another response (and prior weights / trials): a refit on
        simulated data (bootstrap, simulation studies) reuses X and the random-effect structure."""
        y = np.array(y, dtype=float)
        wt = self.wt if wt is None else np.array(wt, dtype=float)
        if y.shape != self.y.shape or wt.shape != self.wt.shape:
            raise DataError(f"a new response must have {self.n} values, got {y.shape[0]}")
        self.family.validate(y, wt)
        return dataclasses.replace(self, y=y, wt=wt)

    def problem(self, y=None, wt=None, offset=None) -> Problem:
        """The numeric problem for the core (optionally with a working response, weights and
        offset: PQL's working response already has the offset taken out)."""
        return Problem(
            self.X,
            self.y if y is None else y,
            self.wt if wt is None else wt,
            self.offset if offset is None else offset,
            self.family,
            self.structure,
        )

    def level_subsample(self, step: int) -> "Design":
        """The rows of every `step`-th level of the first term (the one with most levels), whole
        groups kept, each term's levels renumbered to those that remain: a smaller design of
        the same model (a start for the fit of a large one)."""
        keep = np.flatnonzero(self.terms[0].codes % step == 0)
        terms = []
        for t in self.terms:
            codes = t.codes[keep]
            used = np.flatnonzero(np.bincount(codes, minlength=t.nlevels))
            renumber = np.zeros(t.nlevels, dtype=codes.dtype)
            renumber[used] = np.arange(len(used), dtype=codes.dtype)
            terms.append(dataclasses.replace(t, codes=_frozen(renumber[codes]), X=_frozen(t.X[keep]),
                                             levels=tuple(t.levels[i] for i in used)))
        return dataclasses.replace(
            self, X=_frozen(self.X[keep]), y=_frozen(self.y[keep]), wt=_frozen(self.wt[keep]),
            offset=_frozen(self.offset[keep]), terms=tuple(terms), rows=_frozen(self.rows[keep]),
            structure=ReStructure(terms), index=None if self.index is None else self.index[keep])

    # -- new data ---------------------------------------------------------------------
    def prepare_newdata(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """The column checks/conversions of the fit (object columns of numbers made numeric)."""
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        newdata = newdata.reset_index(drop=True)
        return _check_columns(newdata, _used_columns(self.spec, newdata, strict=False))

    def new_fixed(self, newdata: pd.DataFrame) -> np.ndarray:
        newdata = self.prepare_newdata(newdata)
        X = fm.fixed_design_newdata(self.fixed_state, newdata)
        keep = [i for i, nm in enumerate(self.fixed_state.names) if nm not in self.dropped]
        return X[:, keep]

    def new_offset(self, newdata: pd.DataFrame) -> np.ndarray:
        return _offset(self.spec, self.prepare_newdata(newdata))

    def new_terms(self, newdata: pd.DataFrame):
        """Per term: (codes with -1 for unseen levels, covariates) on new data."""
        newdata = self.prepare_newdata(newdata)
        out = []
        for t in self.terms:
            Xt = fm.term_matrix_newdata(t.lhs_state, newdata)
            labels = group_labels(t.group_vars, newdata)
            index = {lv: i for i, lv in enumerate(t.levels)}
            codes = np.array([index.get(lv, -1) for lv in labels], dtype=np.int64)
            if len(codes) and (codes < 0).all() and len(t.group_vars) == 1:
                _check_group_type(t, newdata[t.group_vars[0].strip("`")])
            out.append((codes, Xt))
        return out


# --------------------------------------------------------------------------- building


def _used_columns(spec: Spec, data: pd.DataFrame, strict: bool = True) -> list[str]:
    p = spec.parsed
    exprs = list(p.response.exprs) + list(p.offsets)
    for extra in (spec.weights, spec.offset):
        if extra:
            exprs.append(extra)
    cols: list[str] = []
    for e in exprs:
        cols += fm.referenced_columns(e, data)
    # the fixed part and random left sides are formulas: the columns of their variables
    for txt in [p.fixed] + [t.lhs for t in p.random]:
        cols += fm.formula_columns(txt, data)
    for t in p.random:
        for g in t.group:
            g = g.strip("`")
            if g not in data.columns:
                if not strict:
                    continue
                raise DataError(
                    f"grouping factor '{g}' in random term ({t.lhs} | {t.group_name}) is not a "
                    f"column of the data; available columns: {', '.join(map(str, data.columns[:20]))}"
                )
            cols.append(g)
    return list(dict.fromkeys(cols))


@contextmanager
def _part(what: str):
    """Say which part of the model an evaluation error comes from."""
    try:
        yield
    except DataError as e:
        raise DataError(f"{what}: {e}") from None


def _rows_text(k: int) -> str:
    return f"{k} row" if k == 1 else f"{k} rows"


def _bad(k: int) -> str:
    return f"{k} bad row" if k == 1 else f"{k} bad rows"


def _row(i: int, rows) -> str:
    return f"row {int(rows[i]) if rows is not None else i}"


def _value_kind(v):
    """'text', 'number', 'logical' or the type name of one value of an object column."""
    if pd.api.types.is_scalar(v) and pd.isna(v):
        return None
    if isinstance(v, str):
        return "text"
    if isinstance(v, (bool, np.bool_)):
        return "logical"
    if isinstance(v, (int, float, np.number)):
        return "number"
    return type(v).__name__


def _check_columns(data: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Column-level problems a formula cannot handle, named before anything is evaluated.

    Returns the data with object columns that hold only numbers made numeric (as R would
    see them), so that they are not silently taken for factors."""
    if not data.columns.is_unique:
        dup = data.columns[data.columns.duplicated()]
        for c in cols:
            if c in dup:
                raise DataError(f"the data have more than one column named '{c}'; rename the duplicates")
    # the dtypes at once: a column is fetched only where its values must be read
    dtypes = dict(zip(data.columns, data.dtypes))
    for c in cols:
        dt = dtypes[c]
        if _plain_dtype(dt):
            continue
        if pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
            raise DataError(
                f"column '{c}' has dtype {dt}; convert it to a number (e.g. days since a date) "
                "or to a categorical before using it in a model"
            )
        if dt == object:
            s = data[c]
            kinds = s.map(_value_kind)
            seen = kinds.dropna()
            if seen.nunique() > 1:
                first = seen.iloc[0]
                i = int(np.flatnonzero((kinds != first) & kinds.notna())[0])
                raise DataError(
                    f"column '{c}' mixes value types: row {int(seen.index[0])} is {first} but row {i} "
                    f"is {kinds.iloc[i]} ({s.iloc[i]!r}); make the column all strings or all numbers"
                )
            if len(seen) and seen.iloc[0] == "number":
                data = data.assign(**{c: pd.to_numeric(s.where(kinds.notna(), np.nan))})
    return data


def _plain_dtype(dt) -> bool:
    """numpy numbers and bools, and categoricals: nothing to check in the values' types."""
    return isinstance(dt, pd.CategoricalDtype) or (isinstance(dt, np.dtype) and dt.kind in "biuf")


def _missing(v: pd.Series) -> np.ndarray:
    """Which values are missing: read off the codes or the numbers where the dtype allows
    (pandas' isna costs more than the test at the sizes of most models)."""
    dt = v.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return np.asarray(v.array.codes) < 0
    if isinstance(dt, np.dtype) and dt.kind in "biu":
        return np.zeros(len(v), dtype=bool)
    if isinstance(dt, np.dtype) and dt.kind == "f":
        return np.isnan(v.to_numpy())
    return np.asarray(v.isna())


def _check_missing(spec: Spec, data: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, np.ndarray, int]:
    masks = {c: _missing(data[c]) for c in cols}  # per column: no sub-frame copy
    bad = np.zeros(len(data), dtype=bool)
    for m in masks.values():
        bad |= m
    if not bad.any():
        return data, np.arange(len(data)), 0
    if spec.na_action == "omit":
        keep = np.flatnonzero(~bad)
        return data.iloc[keep].reset_index(drop=True), keep, int(bad.sum())
    per_col = {c: int(m.sum()) for c, m in masks.items() if m.any()}
    first = int(np.flatnonzero(bad)[0])
    detail = ", ".join(f"'{c}' ({_rows_text(k)})" for c, k in per_col.items())
    raise DataError(
        f"missing values in {_rows_text(int(bad.sum()))} of the columns the model uses: {detail}; "
        f"first at row {first}. Remove them, or pass na_action='omit' to drop those rows."
    )


def _as_float(v, what: str) -> np.ndarray:
    if isinstance(v, pd.Categorical) or np.asarray(v).dtype == object:
        raise DataError(f"{what} must be numeric, got a factor/strings")
    return np.asarray(v, dtype=float)


def _response(spec: Spec, data: pd.DataFrame, rows=None) -> tuple[np.ndarray, np.ndarray, str]:
    r = spec.parsed.response
    fam = spec.fam
    prior = np.ones(len(data))
    if spec.weights:
        with _part("weights"):
            prior = _as_float(fm.evaluate(spec.weights, data), f"weights '{spec.weights}'")
        bad = ~np.isfinite(prior) | (prior < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"weights '{spec.weights}' must be finite and >= 0; {_row(i, rows)} has "
                f"{show_value(prior[i])} ({_bad(int(bad.sum()))})"
            )
    if r.kind == "cbind":
        name = f"cbind({', '.join(r.exprs)})"
        if not fam.dist.binary_response:
            raise DataError(f"{name}: a two-column response is for the binomial family only")
        with _part(f"response {name}"):
            s = _as_float(fm.evaluate(r.exprs[0], data), f"successes '{r.exprs[0]}'")
            f = _as_float(fm.evaluate(r.exprs[1], data), f"failures '{r.exprs[1]}'")
        for vals, nm in ((s, r.exprs[0]), (f, r.exprs[1])):
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(vals) | (vals < 0) | (np.abs(vals - np.round(vals)) > 1e-8)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                hint = " (successes > trials?)" if nm == r.exprs[1] and vals[i] < 0 else ""
                raise DataError(
                    f"{name}: '{nm}' must be finite non-negative whole numbers{hint}; "
                    f"{_row(i, rows)} has {show_value(vals[i])} ({_bad(int(bad.sum()))})"
                )
        n = s + f
        y = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
        return y, n * prior, name
    name = r.exprs[0]
    with _part("response"):
        v = fm.evaluate(name, data)
    if isinstance(v, pd.Categorical) or np.asarray(v).dtype == object or np.asarray(v).dtype == bool:
        if not fam.dist.binary_response:
            raise DataError(
                f"response '{name}' is a factor/strings/bool; only the binomial family takes a "
                f"factor response, not {fam.name}"
            )
        if np.asarray(v).dtype == bool:
            return np.asarray(v, dtype=float), prior, name
        cat = v if isinstance(v, pd.Categorical) else pd.Categorical(v)
        cat = cat.remove_unused_categories()
        if len(cat.categories) != 2:
            raise DataError(
                f"factor response '{name}' must have two levels (first = failure, as in R); "
                f"it has {len(cat.categories)}: {list(cat.categories)[:10]}"
            )
        return (cat.codes == 1).astype(float), prior, name
    y = np.asarray(v, dtype=float)
    try:
        fam.validate(y, prior, rows=rows)
    except DataError as e:
        raise DataError(f"response '{name}': {e}") from None
    return y, prior, name


def _offset(spec: Spec, data: pd.DataFrame, rows=None) -> np.ndarray:
    off = np.zeros(len(data))
    exprs = list(spec.parsed.offsets) + ([spec.offset] if spec.offset else [])
    for e in exprs:
        with _part("offset"):
            v = _as_float(fm.evaluate(e, data), f"offset '{e}'")
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"offset '{e}' is not finite in {_rows_text(int(bad.sum()))} (first: {_row(i, rows)}, "
                f"value {show_value(v[i])})"
            )
        off = off + v
    return off


# links whose scale is logarithmic (log, and the logits of probabilities): an offset range of
# 100 is a ratio of e^100 ≈ 3e43 between exposures -- never data, always a raw exposure
_LOG_SCALE_LINKS = ("log", "logit", "probit", "cloglog")
_OFFSET_RANGE_MAX = 100.0


def _check_offset_scale(spec: Spec, off: np.ndarray) -> None:
    """An offset on the wrong scale (days instead of log(days)) makes every method fail deep
    inside or, worse, fit nonsense; it is named here instead."""
    if spec.fam.link.name not in _LOG_SCALE_LINKS or off.size == 0 or np.ptp(off) <= _OFFSET_RANGE_MAX:
        return
    name = spec.offset or ", ".join(spec.parsed.offsets) or "offset"
    raise DataError(
        f"offset '{name}' ranges from {off.min():.4g} to {off.max():.4g}, a factor of "
        f"e^{np.ptp(off):.0f} on the {spec.fam.link.name} link: an offset is on the link scale, "
        "so exposure times or population sizes enter as log(exposure).")


def _level_texts(v: pd.Series) -> np.ndarray:
    """R's text of each value of a grouping column (2.0 -> "2", True -> "TRUE"; NA -> "NA")."""
    cat = pd.Categorical(v)
    text = np.array([fm.level_text(c) for c in cat.categories] + ["NA"], dtype=object)
    return text[np.asarray(cat.codes)]


def group_labels(group_vars, data: pd.DataFrame) -> list[str]:
    """The grouping-factor label of each row, as the fitted levels are written."""
    parts = [_level_texts(data[g.strip("`")]) for g in group_vars]
    if len(parts) == 1:
        return list(parts[0])
    return [":".join(x) for x in zip(*parts)]


def _is_number_text(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _check_group_type(term: ReTerm, column: pd.Series) -> None:
    """No newdata value is a fitted level: a DataError when the column's type differs from
    the fit's (numbers for text levels or text for numeric levels), rather than taking
    every row for a new level."""
    present = column[column.notna()]
    if present.empty:
        return
    new = fm.describe_values(fm.column_values(present))
    new_numeric = new in ("integers", "numbers")
    fit_numeric = all(_is_number_text(lv) for lv in term.levels)
    if new_numeric == fit_numeric:
        return
    shown = ", ".join(f"'{lv}'" for lv in term.levels[:5])
    more = f", ... ({len(term.levels)} in all)" if len(term.levels) > 5 else ""
    g = term.group_vars[0].strip("`")
    raise DataError(
        f"grouping factor '{g}' had levels {shown}{more} when fitting but newdata has {new} that "
        f"match none of them; give newdata['{g}'] as the fitted levels (e.g. as strings)"
    )


def _group_factor(group_vars, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes and used levels of a grouping factor (interaction a:b has levels 'a1:b1', ...)."""
    per_var = [_variable_codes(data[g.strip("`")]) for g in group_vars]
    # lexicographic order, first variable slowest (R's `a:b` on factors), unused combos dropped
    sizes = [len(cats) for _, cats in per_var]
    codes = np.zeros(len(data), dtype=np.int64)
    for (c, _), size in zip(per_var, sizes):
        codes = codes * size + c
    if len(per_var) == 1:  # the used levels by a count over the categories, no sort
        used, inverse = fm.used_codes(codes, sizes[0])
    else:
        used, inverse = np.unique(codes, return_inverse=True)
    # each category's text once, then one join per level
    texts = [[fm.level_text(x) for x in cats] for _, cats in per_var]
    digits = np.unravel_index(used, sizes) if sizes else ()
    parts = [[tv[i] for i in d.tolist()] for tv, d in zip(texts, digits)]
    labels = parts[0] if len(parts) == 1 else [":".join(p) for p in zip(*parts)]
    return inverse.astype(np.int64), tuple(labels)


def _variable_codes(v: pd.Series) -> tuple[np.ndarray, list]:
    """(codes, categories) of one grouping variable: a categorical's own (its unused categories
    are dropped with the unused combinations), numbers and logicals sorted, anything else as
    sorted text."""
    if isinstance(v.dtype, pd.CategoricalDtype):
        return np.asarray(v.array.codes, dtype=np.int64), v.dtype.categories.tolist()
    if pd.api.types.is_numeric_dtype(v.dtype) or pd.api.types.is_bool_dtype(v.dtype):
        cat = pd.Categorical(v, categories=np.sort(v.unique()))
    else:
        cat = pd.Categorical(v.astype(str), categories=sorted(v.astype(str).unique()))
    return np.asarray(cat.codes, dtype=np.int64), cat.categories.tolist()


def _check_finite(X: np.ndarray, names, what: str, rows) -> None:
    """A NaN/Inf made by an expression (log(0), 1/0, Inf in the data) names its column and row."""
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = (int(a[0]) for a in np.nonzero(bad))
        raise DataError(
            f"{what} column '{names[j]}' is not finite in {_rows_text(int(bad[:, j].sum()))} "
            f"(first: {_row(i, rows)}, value {show_value(X[i, j])})"
        )


def _drop_rank_deficient(X: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Drop columns that are linear combinations of earlier ones (R's qr pivoting keeps order)."""
    if X.shape[1] == 0:
        return X, names, ()
    scale = np.linalg.norm(X, axis=0)
    # the usual full-rank case by one Householder QR: |R_jj| is column j's distance from the
    # span of the earlier ones, the loop's test below; with a margin of 10 against rounding
    if X.shape[0] >= X.shape[1] and np.all(scale > 0):
        r = np.abs(np.diagonal(np.linalg.qr(X, mode="r")))
        if np.all(r > 1e-6 * scale):
            return np.ascontiguousarray(X), tuple(names), ()
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        x = X[:, j]
        if scale[j] == 0:
            continue
        r = x - Q @ (Q.T @ x)
        r = r - Q @ (Q.T @ r)  # re-orthogonalize: exact enough for tol 1e-7
        nr = np.linalg.norm(r)
        if nr > 1e-7 * scale[j]:
            keep.append(j)
            Q = np.column_stack([Q, r / nr])
    dropped = tuple(nm for j, nm in enumerate(names) if j not in keep)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient{'s' if len(dropped) > 1 else ''}: "
            f"{', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=4,
        )
    return np.ascontiguousarray(X[:, keep]), tuple(names[j] for j in keep), dropped


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only, C-contiguous copy that no other array shares: the design never aliases
    the caller's DataFrame (editing it after the fit changes nothing), and nothing can
    write into the design's arrays."""
    a = np.array(a, copy=True, order="C")
    a.setflags(write=False)
    return a


def _random_terms(spec: Spec, data: pd.DataFrame, n: int, where) -> list[ReTerm]:
    """One ReTerm per bar term, each checked (levels, identifiability, duplicates)."""
    fam = spec.fam
    terms: list[ReTerm] = []
    seen: dict[str, int] = {}
    for rt in spec.parsed.random:
        with _part(f"random term ({rt.lhs} | {rt.group_name})"):
            Xt, cnames, state = fm.term_matrix(rt.lhs, data)
        if Xt.shape[1] == 0:
            raise DataError(f"random term ({rt.lhs} | {rt.group_name}) has no columns")
        _check_finite(Xt, cnames, f"random term ({rt.lhs} | {rt.group_name}):", where)
        codes, levels = _group_factor(rt.group, data)
        _check_levels(f"({rt.lhs} | {rt.group_name})", rt.group_name, len(levels), Xt.shape[1], n, fam.is_lmm)
        gname = rt.group_name
        if gname in seen:
            seen[gname] += 1
            gname = f"{gname}.{seen[rt.group_name]}"
        else:
            seen[gname] = 0
        term = ReTerm(gname, rt.group, rt.lhs, cnames, levels, _frozen(codes), _frozen(Xt), state)
        _check_duplicate(term, terms)
        terms.append(term)
    return terms


def _check_levels(label: str, group: str, nlevels: int, k: int, n: int, lmm: bool) -> None:
    if nlevels < 2:
        raise DataError(
            f"grouping factor '{group}' in {label} has {nlevels} level: "
            "a random effect needs at least two sampled levels"
        )
    if lmm and nlevels >= n:
        raise DataError(
            f"{label}: grouping factor '{group}' has {nlevels} levels for {n} "
            "observations; with a residual variance the model is not identifiable"
        )
    q = nlevels * k
    if q > n or (lmm and q >= n):  # lme4's check.nobs.vs.nRE (lmer: nobs <= nRE)
        coefs = "coefficient" if k == 1 else "coefficients"
        raise DataError(
            f"{label}: grouping factor '{group}' has {nlevels} levels x {k} {coefs} = {q} random "
            f"effects for {n} observations; the variance parameters are not identifiable"
        )


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two grouping codes define the same groups (up to relabelling)."""
    if a.max() != b.max():
        return False
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == a.max() + 1


def _check_duplicate(term: ReTerm, earlier: list[ReTerm]) -> None:
    """A term whose groups and covariates repeat an earlier term's: only the sum of their
    covariances is identified, so an optimizer would split it arbitrarily."""
    for t in earlier:
        same_cols = t.k == term.k and np.allclose(t.X, term.X)
        if same_cols and _same_partition(t.codes, term.codes):
            raise SpecError(
                f"random term {term} repeats {t}: the same covariates on the same groups, so only "
                "the sum of their variances is identified; remove one of them"
            )


def _check_weights(spec: Spec, wt: np.ndarray) -> None:
    if not np.any(wt > 0):
        what = f"the prior weights '{spec.weights}'" if spec.weights else "the numbers of trials"
        raise DataError(f"{what} are zero in every row: there is nothing to fit")


def _check_residual_variance(X: np.ndarray, y: np.ndarray, response: str, names) -> None:
    """A linear mixed model needs residual variation: y exactly linear in the fixed effects
    (a constant response, or data generated without noise) has σ = 0 and no likelihood maximum."""
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    if X.shape[1]:
        resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    else:
        resid = y
    if float(np.max(np.abs(resid))) <= 1e-10 * max(scale, 1e-300):
        what = "constant" if np.ptp(y) <= 1e-12 * max(scale, 1e-300) else (
            f"an exact linear function of {', '.join(names)}")
        raise DataError(
            f"response '{response}' is {what}: the residual variance is zero, so the linear mixed "
            "model has no maximum-likelihood estimate"
        )


def build_design(spec: Spec, data: pd.DataFrame) -> Design:
    """Evaluate `spec` on `data`: every data check that can name its culprit happens here."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("data has no rows")
    labels = data.index
    data = data.reset_index(drop=True)
    cols = _used_columns(spec, data)
    data = _check_columns(data, cols)
    data, rows, n_omitted = _check_missing(spec, data, cols)
    if len(data) == 0:
        raise DataError(f"no rows left after removing the {n_omitted} rows with missing values")
    where = rows if n_omitted else None  # report rows as positions in the data passed in
    y, wt, response_name = _response(spec, data, where)
    fam = spec.fam
    if fam.dist.binary_response:  # cbind() and factor responses are checked once built
        try:
            fam.validate(y, wt, rows=where)
        except DataError as e:
            raise DataError(f"response '{response_name}': {e}") from None
    _check_weights(spec, wt)
    offset = _offset(spec, data, where)
    _check_offset_scale(spec, offset)
    with _part(f"fixed-effects part '{spec.parsed.fixed}'"):
        fd = fm.fixed_design(spec.parsed.fixed, data)
    _check_finite(fd.X, fd.names, "fixed-effect", where)
    X, names, dropped = _drop_rank_deficient(fd.X, fd.names)
    if fam.is_lmm:
        _check_residual_variance(X, y - offset, response_name, names)
    terms = _random_terms(spec, data, len(y), where)
    # lme4 (and MixedModels.jl) order terms by decreasing number of levels: the first
    # term then gives the largest block-diagonal block of the Cholesky factor
    order = sorted(range(len(terms)), key=lambda i: -terms[i].nlevels)
    terms = [terms[i] for i in order]
    return Design(
        spec=spec,
        X=_frozen(X),
        fixef_names=names,
        y=_frozen(y),
        wt=_frozen(wt),
        offset=_frozen(offset),
        terms=tuple(terms),
        rows=_frozen(rows),
        n_omitted=n_omitted,
        dropped=dropped,
        response_name=response_name,
        fixed_state=fd,
        structure=ReStructure(terms),
        index=labels[rows],
    )


__all__ = ["Design", "ReTerm", "build_design", "theta_diag_mask"]
