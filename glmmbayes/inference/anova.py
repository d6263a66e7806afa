"""Likelihood-ratio tests between nested fits: `anova` (lme4's anova.merMod table) and `lrt`.

Fits are compared only where their log-likelihoods are comparable: the same data and response,
the same family, the same kind of likelihood (Laplace, AGQ, exact; REML only when the fixed
effects are the same, since the REML criterion changes with the fixed-effect design), and nested
models (the smaller model's fixed-effect columns and random-effect coefficients are among the
larger one's). When the larger model adds a variance component, the null value lies on the
boundary of the parameter space and the χ² reference is conservative; the χ̄² mixture p-value
(Self & Liang 1987; Stram & Lee 1994) is given beside the naive one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np
import pandas as pd
from scipy.stats import chi2

from ..errors import SpecError

NO_LIKELIHOOD = {
    "pql": "PQL maximizes a quasi-likelihood of a working model: it has no log-likelihood to compare",
    "joint": "the joint (h-likelihood) mode maximizes a joint density of data and random effects, "
             "not the marginal likelihood",
    "hmc": "an hmc fit is a posterior sample: compare posteriors (e.g. LOO with ArviZ), not likelihood ratios",
}

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)", "Pr(>Chisq) boundary"]


@dataclass(frozen=True)
class LRT:
    """One likelihood-ratio test of a smaller fit against a larger one.

    chisq, df, p_value: the statistic 2(ℓ1 - ℓ0), the difference in parameters, and the naive
    χ²_df p-value. p_boundary: the χ̄² mixture p-value when the larger model adds variance
    components (null on the boundary), else None; boundary: what that mixture is.
    """

    chisq: float
    df: int
    p_value: float
    p_boundary: float | None
    boundary: str | None
    table: pd.DataFrame = field(repr=False)


def _label(fit) -> str:
    return fit.call.method if fit.call is not None else fit.method


def _check_likelihood(fit, name: str) -> None:
    if fit.method in NO_LIKELIHOOD or fit.loglik is None:
        reason = NO_LIKELIHOOD.get(fit.method, "this fit has no log-likelihood")
        raise SpecError(f"{name} (method={fit.method!r}) cannot enter a likelihood-ratio test: {reason}")


def _kind(fit) -> str:
    return "exact" if fit.likelihood == "exact" else fit.likelihood


def _same_data(a, b, na: str, nb: str) -> None:
    da, db = a.design, b.design
    if da.n != db.n:
        raise SpecError(f"{na} and {nb} were fitted to different numbers of observations "
                        f"({da.n} and {db.n}): a likelihood-ratio test needs the same data")
    if not (np.array_equal(da.y, db.y) and np.array_equal(da.wt, db.wt)):
        raise SpecError(f"{na} and {nb} have different responses or weights: a likelihood-ratio "
                        "test needs the same data")
    if (da.family.name, da.family.link.name) != (db.family.name, db.family.link.name):
        raise SpecError(f"{na} and {nb} have different families ({da.family.name}/{da.family.link.name} "
                        f"and {db.family.name}/{db.family.link.name})")


def _in_span(A: np.ndarray, B: np.ndarray) -> bool:
    """Every column of A is a linear combination of the columns of B."""
    if A.shape[1] == 0:
        return True
    if B.shape[1] == 0:
        return False
    coef, *_ = np.linalg.lstsq(B, A, rcond=None)
    resid = A - B @ coef
    return bool(np.all(np.linalg.norm(resid, axis=0) <= 1e-8 * (1 + np.linalg.norm(A, axis=0))))


def _re_coefs(design) -> dict[str, set[str]]:
    """Random-effect coefficients per grouping factor (terms of one factor pooled: (1 | g) +
    (0 + x | g) is (x | g) without the correlation)."""
    out: dict[str, set[str]] = {}
    for t in design.terms:
        out.setdefault(":".join(t.group_vars), set()).update(t.coef_names)
    return out


def _check_nested(small, big, ns: str, nb: str) -> None:
    ds, db = small.design, big.design
    if not _in_span(ds.X, db.X):
        raise SpecError(f"{ns} is not nested in {nb}: its fixed effects "
                        f"({', '.join(ds.fixef_names)}) are not in the span of {nb}'s "
                        f"({', '.join(db.fixef_names)})")
    rs, rb = _re_coefs(ds), _re_coefs(db)
    for g, coefs in rs.items():
        missing = coefs - rb.get(g, set())
        if missing:
            raise SpecError(f"{ns} is not nested in {nb}: its random effects {sorted(missing)} for "
                            f"'{g}' are not in {nb}")


def _new_variances(small, big) -> int:
    """Variance parameters (sds) of the larger model that the smaller one does not have."""
    def sds(f):
        return {(g, c) for g, coefs in _re_coefs(f.design).items() for c in coefs}
    return len(sds(big) - sds(small))


def _mixture_p(stat: float, df: int, m: int) -> float:
    """χ̄² p-value for m new variance components among df new parameters: weights C(m, i)/2^m on
    χ²_{df-m+i} (exact for one component, 0.5 χ²_{df-1} + 0.5 χ²_{df}; for several, the weights
    of asymptotically independent components)."""
    def tail(k):  # P(χ²_k >= stat); χ²_0 is a point mass at 0
        return float(chi2.sf(stat, k)) if k > 0 else float(stat <= 0)

    return float(sum(comb(m, i) / 2**m * tail(df - m + i) for i in range(m + 1)))


def anova(*fits, names=None, refit: bool = False) -> pd.DataFrame:
    """Likelihood-ratio tests of nested fits, like lme4's anova(m0, m1, ...).

    Rows in order of npar (ties keep the input order), named by `names` or "model1", ...;
    columns npar, AIC, BIC, logLik, deviance (-2 logLik), Chisq, Df, Pr(>Chisq) (each row against
    the one above), and "Pr(>Chisq) boundary": the χ̄² mixture p-value where the larger model adds
    variance components (their null value, 0, is on the boundary; the naive χ² p-value is then
    conservative), NaN otherwise. `.attrs["notes"]` says which mixture was used.

    REML fits are compared on the REML criterion only when their fixed effects are the same;
    with different fixed effects they are refused, or, with refit=True, refitted by ML first (as
    lme4's anova does by default). PQL, joint and hmc fits are refused: they have no likelihood.
    """
    if len(fits) < 2:
        raise SpecError("anova needs at least two fits")
    if names is None:
        names = [f"model{i + 1}" for i in range(len(fits))]
    names = [str(n) for n in names]
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise SpecError(f"names must give {len(fits)} distinct names, got {names!r}")
    for f, n in zip(fits, names):
        _check_likelihood(f, n)
    fits = list(fits)
    reml = [f.spec.reml for f in fits]
    if any(reml):
        same_fixed = all(np.array_equal(f.design.X, fits[0].design.X) for f in fits)
        if not (all(reml) and same_fixed):
            if not refit:
                raise SpecError("REML criteria are comparable only between fits with the same fixed "
                                "effects (the criterion depends on the fixed-effect design) and all "
                                "fitted by REML: refit with REML=False, or pass refit=True to refit by ML")
            from .profiler import ml_fit

            fits = [ml_fit(f) for f in fits]
    kinds = {_kind(f) for f in fits}
    if len(kinds) > 1:
        raise SpecError(f"the fits use different likelihoods ({', '.join(sorted(map(str, kinds)))}): "
                        "compare fits made with the same method and nAGQ")
    for i in range(1, len(fits)):
        _same_data(fits[0], fits[i], names[0], names[i])
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    rows, notes = [], []
    for pos, i in enumerate(order):
        f = fits[i]
        ll = float(f.loglik)
        row = {"npar": f.npar, "AIC": -2 * ll + 2 * f.npar, "BIC": -2 * ll + np.log(f.nobs) * f.npar,
               "logLik": ll, "deviance": -2 * ll, "Chisq": np.nan, "Df": np.nan,
               "Pr(>Chisq)": np.nan, "Pr(>Chisq) boundary": np.nan}
        if pos > 0:
            j = order[pos - 1]
            g = fits[j]
            _check_nested(g, f, names[j], names[i])
            stat = max(2.0 * (ll - float(g.loglik)), 0.0)
            df = f.npar - g.npar
            row.update({"Chisq": stat, "Df": df, "Pr(>Chisq)": float(chi2.sf(stat, df)) if df > 0 else np.nan})
            m = _new_variances(g, f)
            if m > 0 and df > 0:
                row["Pr(>Chisq) boundary"] = _mixture_p(stat, df, m)
                mix = " + ".join(f"{comb(m, k) / 2**m:g} χ²_{df - m + k}" for k in range(m + 1))
                notes.append(f"{names[i]} vs {names[j]}: {m} variance component(s) tested on the "
                             f"boundary; χ̄² mixture {mix}"
                             + ("" if m == 1 else " (weights of independent components: approximate)"))
        rows.append(row)
    out = pd.DataFrame(rows, index=pd.Index([names[i] for i in order], name="model"), columns=COLUMNS)
    out["npar"] = out["npar"].astype(int)
    out["Df"] = out["Df"].astype("Int64")  # NA on the first row, as lme4
    out.attrs["notes"] = tuple(notes)
    out.attrs["formulas"] = {names[i]: fits[i].spec.formula for i in order}
    out.attrs["likelihood"] = kinds.pop()
    return out


def lrt(fit0, fit1, refit: bool = False) -> LRT:
    """The likelihood-ratio test of the smaller fit against the larger one (either order); see
    `anova` for the checks and the boundary mixture. Returns an `LRT`."""
    tab = anova(fit0, fit1, names=["fit0", "fit1"], refit=refit)
    last = tab.iloc[1]
    pb = float(tab["Pr(>Chisq) boundary"].iloc[1])
    return LRT(chisq=float(last["Chisq"]), df=int(tab["Df"].iloc[1]), p_value=float(tab["Pr(>Chisq)"].iloc[1]),
               p_boundary=None if np.isnan(pb) else float(pb),
               boundary=tab.attrs["notes"][0] if tab.attrs["notes"] else None, table=tab)
