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


def varcorr_rows(vc: pd.DataFrame) -> list[tuple[str, str, str, float]]:
    """(quantity, term, name, value) per row of a VarCorr table: quantity "sd", "cor" or
    "sigma"; term the study's term label (``herd``, ``herd.x``, ``herd.(Intercept).x``,
    ``Residual``); name the bootstrap's (``sd.herd``...)."""
    coefs = _term_coefs(vc)
    out = []
    for r in vc.itertuples(index=False):
        if r.grp == "Residual":
            out.append(("sigma", "Residual", "sigma", float(r.sdcor)))
        elif _is_variance(r.var2):
            term = r.grp if coefs[r.grp] == ["(Intercept)"] else f"{r.grp}.{r.var1}"
            out.append(("sd", term, f"sd.{term}", float(r.sdcor)))
        else:
            term = f"{r.grp}.{r.var1}.{r.var2}"
            out.append(("cor", term, f"cor.{term}", float(r.sdcor)))
    return out


def lme4_names(vc: pd.DataFrame) -> dict[str, str]:
    """Our variance-component names -> lme4's ``confint`` names (``.sig01``, ..., ``.sigma``):
    per term, column by column of the lower triangle (sd of a coefficient, then its
    correlations with the later ones), as lme4 orders θ."""
    coefs = _term_coefs(vc)
    ours = {(q, t): n for q, t, n, _ in varcorr_rows(vc)}
    out, k = {}, 0
    for grp, cs in coefs.items():
        for j, cj in enumerate(cs):
            for i in range(j, len(cs)):
                k += 1
                key = ("sd", grp if cs == ["(Intercept)"] else f"{grp}.{cj}") if i == j \
                    else ("cor", f"{grp}.{cj}.{cs[i]}")
                out[ours[key]] = f".sig{k:02d}"
    if ("sigma", "Residual") in ours:
        out["sigma"] = ".sigma"
    return out


def fit_values(fit) -> pd.Series:
    """Fixed effects then variance components of a fit, under the names above (float Series)."""
    vals = {str(k): float(v) for k, v in fit.fixef.items()}
    vals.update({name: v for _, _, name, v in varcorr_rows(fit.varcorr)})
    return pd.Series(vals, dtype=float)
