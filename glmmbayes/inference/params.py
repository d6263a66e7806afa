"""lme4's profile parameters: standard deviations and correlations of each random-effect term
(`.sig01`, ... in getME(m, "theta") order), the residual sd `.sigma`, then the fixed effects,
and the maps between them and the (θ, φ) the methods optimize."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.linalg import colwise_tril
from ..design import Design


def has_sigma(design: Design) -> bool:
    """Whether the model has a `.sigma` parameter (the LMM's residual sd, or sqrt of an estimated
    dispersion)."""
    return bool(design.family.is_lmm or design.dispersion_estimated)


def name_map(design: Design) -> pd.DataFrame:
    """The variance parameters by lme4's profile names: name, grp, var1, var2, kind ("sd" or
    "cor", as the rows of `Fit.varcorr`) and lme4's new-style name (`confint(oldNames=FALSE)`)."""
    rows = []
    for t in design.terms:
        r_idx, c_idx = colwise_tril(t.k)
        for r, c in zip(r_idx, c_idx):
            if r == c:
                v1, v2, kind, new = t.coef_names[r], None, "sd", f"{t.coef_names[r]}|{t.group_name}"
            else:
                v1, v2, kind = t.coef_names[c], t.coef_names[r], "cor"
                new = f"{v2}.{v1}|{t.group_name}"
            rows.append((t.group_name, v1, v2, kind, new))
    names = [f".sig{i + 1:02d}" for i in range(len(rows))]
    if has_sigma(design):
        rows.append(("Residual", None, None, "sd", "sigma"))
        names.append(".sigma")
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "kind", "lme4_newname"],
                        index=pd.Index(names, name="name"))


def bounds(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the variance parameters (sd >= 0, -1 <= cor <= 1)."""
    kinds = name_map(design)["kind"].to_numpy()
    lo = np.where(kinds == "sd", 0.0, -1.0)
    hi = np.where(kinds == "sd", np.inf, 1.0)
    return lo, hi


def to_sdcor(design: Design, theta: np.ndarray, phi: float) -> np.ndarray:
    """(sd, cor[, σ]) of the variance parameters at θ and dispersion φ."""
    scale = design.family.re_scale(phi)
    out = []
    for T in design.structure.lambdas(np.asarray(theta, float)):
        S = scale * T @ T.T
        sd = np.sqrt(np.maximum(np.diag(S), 0.0))
        r_idx, c_idx = colwise_tril(T.shape[0])
        for r, c in zip(r_idx, c_idx):
            if r == c:
                out.append(sd[r])
            else:
                den = sd[r] * sd[c]
                out.append(S[r, c] / den if den > 0 else 0.0)
    if has_sigma(design):
        out.append(math.sqrt(phi))
    return np.array(out, float)


def _psd_cholesky(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semidefinite matrix (zero columns where a pivot
    vanishes: a variance at its bound 0)."""
    k = S.shape[0]
    L = np.zeros((k, k))
    for j in range(k):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-300:
            continue
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, k):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def to_theta(design: Design, psi: np.ndarray) -> tuple[np.ndarray, float]:
    """(θ, φ) from the variance parameters (sd, cor[, σ])."""
    psi = np.asarray(psi, float)
    phi = psi[-1] ** 2 if has_sigma(design) else design.fixed_phi
    scale = design.family.re_scale(phi)
    out, at = [], 0
    for t in design.terms:
        r_idx, c_idx = colwise_tril(t.k)
        vals = psi[at : at + len(r_idx)]
        at += len(r_idx)
        sd = np.zeros(t.k)
        C = np.eye(t.k)
        for (r, c), v in zip(zip(r_idx, c_idx), vals):
            if r == c:
                sd[r] = v
            else:
                C[r, c] = C[c, r] = v
        L = _psd_cholesky(np.outer(sd, sd) * C / scale) if scale > 0 else np.zeros((t.k, t.k))
        out.append(L[r_idx, c_idx])
    return (np.concatenate(out) if out else np.zeros(0)), float(phi)
