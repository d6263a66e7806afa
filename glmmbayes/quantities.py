"""The estimated quantities of a fit under stable names, shared by simulation studies and the
bootstrap: fixed effects by their coefficient names, random-effect standard deviations and
correlations by their variance-component names, and lme4's `.sig01`-style names for them.

Names: ``sd.<grp>`` for a term with only an intercept (lme4's ``bootMer`` with
``sqrt(unlist(VarCorr(m)))`` gives ``sd.herd``), ``sd.<grp>.<coef>`` otherwise,
``cor.<grp>.<coef1>.<coef2>`` for a correlation and ``sigma`` for the residual sd.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _is_variance(var2) -> bool:
    return var2 is None or (isinstance(var2, float) and np.isnan(var2))


def _term_coefs(vc: pd.DataFrame) -> dict[str, list[str]]:
    coefs: dict[str, list[str]] = {}
    for r in vc.itertuples(index=False):
        if r.grp != "Residual" and _is_variance(r.var2):
            coefs.setdefault(r.grp, []).append(r.var1)
    return coefs


def _quantity(r, coefs: dict[str, list[str]]) -> tuple[str, str, str]:
    """(quantity, term, name) of one variance-parameter row (grp, var1, var2)."""
    if r.grp == "Residual":
        return "sigma", "Residual", "sigma"
    if _is_variance(r.var2):
        term = r.grp if coefs[r.grp] == ["(Intercept)"] else f"{r.grp}.{r.var1}"
        return "sd", term, f"sd.{term}"
    term = f"{r.grp}.{r.var1}.{r.var2}"
    return "cor", term, f"cor.{term}"


def varcorr_rows(vc: pd.DataFrame) -> list[tuple[str, str, str, float]]:
    """(quantity, term, name, value) per row of a VarCorr table: quantity "sd", "cor" or
    "sigma"; term the study's term label (``herd``, ``herd.x``, ``herd.(Intercept).x``,
    ``Residual``); name the bootstrap's (``sd.herd``...)."""
    coefs = _term_coefs(vc)
    return [(*_quantity(r, coefs), float(r.sdcor)) for r in vc.itertuples(index=False)]


def lme4_names(name_map: pd.DataFrame) -> dict[str, str]:
    """Our variance-component names -> lme4's ``confint`` names (``.sig01``, ..., ``.sigma``),
    read off a fit's `name_map` (which holds lme4's θ order)."""
    coefs = _term_coefs(name_map)
    return {_quantity(r, coefs)[2]: str(nm) for nm, r in zip(name_map.index, name_map.itertuples(index=False))}


def fit_values(fit) -> pd.Series:
    """Fixed effects then variance components of a fit, under the names above (float Series)."""
    vals = {str(k): float(v) for k, v in fit.fixef.items()}
    vals.update({name: v for _, _, name, v in varcorr_rows(fit.varcorr)})
    return pd.Series(vals, dtype=float)
