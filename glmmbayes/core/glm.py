"""A plain GLM fit by IRLS: starting values for the mixed-model fits."""

from __future__ import annotations

import numpy as np


def glm_irls(X, y, wt, offset, family, maxit: int = 50, tol: float = 1e-10):
    """β of the GLM without random effects, and the Pearson dispersion estimate."""
    mu = family.mustart(y, wt)
    lo, hi = family.dist.mu_bounds
    mu = np.clip(mu, max(lo, 1e-8) if np.isfinite(lo) else lo, min(hi, 1 - 1e-8) if np.isfinite(hi) else hi)
    with np.errstate(all="ignore"):
        eta = family.linkfun(mu)
    beta = np.zeros(X.shape[1])
    dev_old = np.inf
    for _ in range(maxit):
        w, mu, dmu = family.working_weights(eta, np.maximum(wt, 1e-12), 1.0)
        z = eta - offset + (y - mu) / dmu
        sw = np.sqrt(w)
        beta_new, *_ = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)
        eta_new = X @ beta_new + offset
        dev = float(np.sum(family.unit_deviance(y, family.linkinv(eta_new), wt)))
        step = 1.0
        while not np.isfinite(dev) or dev > dev_old + 1e-8 * abs(dev_old) and step > 1e-4:
            step /= 2
            b = beta + step * (beta_new - beta)
            eta_new = X @ b + offset
            dev = float(np.sum(family.unit_deviance(y, family.linkinv(eta_new), wt)))
            beta_new = b
        beta, eta = beta_new, eta_new
        if abs(dev_old - dev) < tol * (abs(dev) + 0.1):
            break
        dev_old = dev
    mu = family.linkinv(eta)
    n, p = X.shape
    pearson = float(np.sum(wt * (y - mu) ** 2 / family.variance(mu))) / max(n - p, 1)
    return beta, pearson
