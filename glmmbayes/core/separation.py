"""Separation in binary and binomial data: a direction of the fixed effects along which the
likelihood rises without bound, so that the maximum-likelihood estimate is infinite.

Konis's linear program (the `detectseparation` approach): find d with x_i'd >= 0 in every row
whose trials are all successes, x_i'd <= 0 in every row of all failures, x_i'd = 0 in every mixed
row, maximizing the total margin; a positive optimum means (quasi-)complete separation, and the
coefficients with nonzero d are the ones that run off.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def separating_direction(X: np.ndarray, y: np.ndarray, wt: np.ndarray, tol: float = 1e-7):
    """d (normalized, max |d_j| = 1) along which the data are separated, or None."""
    k = y * wt
    rows = wt > 0
    succ = rows & (np.abs(k - wt) < 1e-9)
    fail = rows & (k < 1e-9)
    mixed = rows & ~succ & ~fail
    s = np.where(succ, 1.0, np.where(fail, -1.0, 0.0))
    signed = s[succ | fail, None] * X[succ | fail]
    if signed.shape[0] == 0 or X.shape[1] == 0:
        return None
    scale = np.maximum(np.max(np.abs(X), axis=0), 1e-300)  # units of each column
    Xs, signed_s = X / scale, signed / scale
    res = linprog(-signed_s.sum(axis=0), A_ub=-signed_s, b_ub=np.zeros(len(signed_s)),
                  A_eq=Xs[mixed] if mixed.any() else None, b_eq=np.zeros(int(mixed.sum())) if mixed.any() else None,
                  bounds=[(-1.0, 1.0)] * X.shape[1], method="highs")
    if not res.success or -res.fun <= tol * len(signed_s):
        return None
    d = res.x / np.max(np.abs(res.x))
    d[np.abs(d) < 1e-6] = 0.0
    return d / scale * np.max(scale)
