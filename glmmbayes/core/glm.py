"""A plain GLM fit by IRLS: starting values for the mixed-model fits."""

from __future__ import annotations

import numpy as np


def glm_irls(X, y, wt, offset, family, maxit: int = 50, tol: float = 1e-10):
    """β of the GLM without random effects (Fisher scoring with step halving) and a starting
    value of the family's dispersion (its `Dispersion.start`; 1 without one).

    Every loop is bounded: a deviance that stays non-finite (an offset that puts μ out of
    range, say) ends the iteration at the last finite point, or at β = 0, rather than looping."""
    mu = family.mustart(y, wt)
    lo, hi = family.dist.mu_bounds
    mu = np.clip(mu, max(lo, 1e-8) if np.isfinite(lo) else lo, min(hi, 1 - 1e-8) if np.isfinite(hi) else hi)
    with np.errstate(all="ignore"):
        eta = family.linkfun(mu)
    beta = np.zeros(X.shape[1])
    dev_old = np.inf
    for it in range(maxit):
        with np.errstate(all="ignore"):
            w, mu, dmu = family.working_weights(eta, np.maximum(wt, 1e-12), 1.0)
            z = eta - offset + (y - mu) / dmu
        sw = np.sqrt(w)
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(sw))):
            break
        beta_new = _weighted_ls(X, z, w, sw)
        if beta_new is None:
            break
        beta_new, dev = _halve(X, y, wt, offset, family, beta if it else None, beta_new, dev_old)
        if not np.isfinite(dev):
            break
        beta, eta = beta_new, X @ beta_new + offset
        if abs(dev_old - dev) < tol * (abs(dev) + 0.1):
            break
        dev_old = dev
    with np.errstate(all="ignore"):
        mu = family.linkinv(X @ beta + offset)
    disp = family.dispersion
    phi = 1.0 if disp is None else float(disp.start(y, mu, wt, len(y) - X.shape[1]))
    return beta, phi


def _weighted_ls(X, z, w, sw):
    """argmin Σ w (z - Xβ)²: the normal equations by Cholesky (one pass over the rows; this
    is only a start value), least squares where X'WX is not numerically positive definite."""
    Xw = X * w[:, None]
    try:
        L = np.linalg.cholesky(Xw.T @ X)
        beta = np.linalg.solve(L.T, np.linalg.solve(L, Xw.T @ z))
        if np.all(np.isfinite(beta)) and np.linalg.cond(L) < 1e6:
            return beta
    except np.linalg.LinAlgError:
        pass
    try:
        return np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
    except np.linalg.LinAlgError:
        return None


def _deviance(X, y, wt, offset, family, beta) -> float:
    with np.errstate(all="ignore"):
        return float(np.sum(family.unit_deviance(y, family.linkinv(X @ beta + offset), wt)))


def _halve(X, y, wt, offset, family, beta_old, beta_new, dev_old, min_step: float = 1e-4):
    """Step halving from β_old towards β_new until the deviance is finite and not larger."""
    dev = _deviance(X, y, wt, offset, family, beta_new)
    if beta_old is None:
        return beta_new, dev
    step = 1.0
    b = beta_new
    while (not np.isfinite(dev) or dev > dev_old + 1e-8 * abs(dev_old)) and step > min_step:
        step /= 2
        b = beta_old + step * (beta_new - beta_old)
        dev = _deviance(X, y, wt, offset, family, b)
    return b, dev


def moment_theta_start(structure, X, y, wt, offset, family, beta, phi: float,
                       floor: float = 0.1, unit: float = 1.0) -> np.ndarray:
    """lme4's start θ = 1, lowered for each scalar term whose between-group spread the GLM fit
    says is far smaller: a method-of-moments sd on the link scale from the group means of the
    GLM's working residuals (E r̄_g² ≈ σ² + 1/Σ_g w), in units of `unit` (the residual sd for a
    linear mixed model, whose θ is relative to it). A start ten times too wide (sd 0.1 on a
    log link) otherwise walks the first quasi-Newton steps to the variance bound and back.
    Never below `floor`: θ = 0 is a stationary point of the (even) deviance, not a start."""
    theta = structure.theta_start()
    with np.errstate(all="ignore"):
        w, mu, dmu = family.working_weights(X @ beta + offset, wt, phi)
        r = (y - mu) / dmu
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(r))):
        return theta
    for i, t in enumerate(structure.terms):
        col = t.X[:, 0] if t.k == 1 else None
        if col is None or not np.all(col == col[0]) or col[0] == 0:
            continue  # vector terms and scalar slopes keep lme4's start
        sw = np.bincount(t.codes, weights=w, minlength=t.nlevels)
        ok = sw > 0
        if ok.sum() < 2:
            continue
        rbar = np.bincount(t.codes, weights=w * r, minlength=t.nlevels)[ok] / sw[ok]
        var = float(np.mean(rbar**2 - 1.0 / sw[ok])) / col[0] ** 2
        sd = np.sqrt(var) / unit if var > 0 else 0.0
        theta[structure.theta_offsets[i]] = float(np.clip(sd, floor, 1.0))
    return theta
