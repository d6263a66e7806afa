"""The profiled LMM deviance of a model whose random-effect terms are all scalar (crossed or
nested intercepts, as lme4's InstEval model), on cross-products.

With Λ = diag(θ_t I) the blocks of Λ'Z'WZΛ are the θ-free blocks of the Gram matrix Z'WZ
scaled by θ_s θ_t, and Λ'Z'WX, Λ'Z'Wr are θ-scaled Z'WX, Z'Wr. The Gram blocks are summed
over the rows once; an evaluation then factors them (`linalg.factor_blocks`, the same blocked
Cholesky as every other objective) without touching the rows. The θ-gradient comes from
the per-term traces of A^{-1} (log-determinant), Z'W r at the solution (pwrss) and, for REML,
products with the Gram matrix -- again no pass over the rows. r is the response less the offset and its
weighted least-squares fit on X, so pwrss, a difference, keeps its digits.

The solution the fit reports is computed once by the general `objective.lmm`; the two paths
agree to rounding (tested).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .linalg import factor_blocks, fixed_pairs, lsolve
from .objective import FixedCrossProducts, dlogdet_scalar_terms, fixed_cross_products

_LOG_2PI = math.log(2.0 * math.pi)


class ScalarTermsLmm:
    """value_and_grad(θ) of the ML deviance or REML criterion of an LMM with several scalar
    terms; `fallback(θ)` -> (value, gradient) for points where the cross-product gradient does
    not apply (a θ_t near 0)."""

    def __init__(self, prob, reml: bool, fallback, fx: FixedCrossProducts | None = None):
        s = prob.structure
        X, w = prob.X, prob.wt
        fx = fixed_cross_products(prob) if fx is None else fx
        V1 = s.zl_values(np.ones(s.ntheta))  # Λ = I: the raw Z
        pat = s.cross_pattern()
        x0 = V1[0][:, 0]
        X2 = np.hstack(V1[1:])
        wX2 = X2 * w[:, None]
        self.d0 = np.bincount(s.terms[0].codes, weights=w * x0 * x0, minlength=s.m[0])
        self.g21 = np.bincount(pat["inv21"], weights=(wX2 * x0[:, None]).ravel(), minlength=pat["nnz21"])
        self.g22 = np.bincount(pat["idx22"], weights=(wX2[:, :, None] * X2[:, None, :]).ravel(),
                               minlength=s.q2 * s.q2).reshape(s.q2, s.q2)
        self.G21 = sp.csr_matrix((self.g21, pat["cols21"], pat["indptr21"]), shape=(s.q2, s.q1))
        self.rows21 = pat["rows21"]
        self.ZX = s.zl_tmult_matrix(V1, fx.Xw)
        self.Zr = s.zl_tmult(V1, w * fx.r)
        self.XtX, self.Xr, self.rr = fx.XtX, fx.Xr, fx.rr
        self.s, self.n, self.p, self.reml = s, fx.n, X.shape[1], reml
        self.term_of_col = np.repeat(np.arange(len(s.terms)), s.q_t)
        self.sumlogw = fx.sumlogw  # rows of weight 0 carry no information (weighted_rows)
        self.fallback = fallback
        self.pairs = fixed_pairs(s, self.g21)  # L21 L21' and the head's traces from one product

    def value_and_grad(self, theta: np.ndarray):
        theta = np.asarray(theta, float)
        try:
            out = self._value_and_grad(theta)
        except np.linalg.LinAlgError:
            return np.inf, None
        return self.fallback(theta) if out is None else out

    def deviance(self, theta: np.ndarray) -> float:
        try:
            return self._solve(np.asarray(theta, float))[0]
        except np.linalg.LinAlgError:
            return np.inf

    def _gram(self, v: np.ndarray) -> np.ndarray:
        """Z'WZ v for a (q,) or (q, c) v, from the Gram blocks."""
        q1 = self.s.q1
        v1, v2 = v[:q1], v[q1:]
        d0 = self.d0 if v.ndim == 1 else self.d0[:, None]
        return np.concatenate([d0 * v1 + self.G21.T @ v2, self.G21 @ v1 + self.g22 @ v2])

    def _solve(self, theta):
        s, n, p = self.s, self.n, self.p
        tcol = theta[self.term_of_col]  # θ of each column of Z
        t2 = tcol[s.q1 :]
        B = (theta[0] ** 2 * self.d0)[:, None, None]
        vals = theta[0] * t2[self.rows21] * self.g21
        A22 = self.g22 * np.outer(t2, t2)
        fp = self.pairs
        fixed = None if fp is None else (fp, theta[0] ** 2 * t2[fp.row_a] * t2[fp.row_b])
        f = factor_blocks(s, B, vals, A22, tcol[:, None] * self.ZX, self.XtX, fixed=fixed)
        yu = f.forward(tcol * self.Zr)
        yb = lsolve(f.RX, self.Xr - f.LX.T @ yu)
        pwrss = self.rr - float(yu @ yu) - float(yb @ yb)
        dof = n - p if self.reml else n
        if dof <= 0 or not pwrss > 0:
            return np.inf, None
        dev = f.ldL2 + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof)) - self.sumlogw
        if self.reml:
            dev += f.ldRX2
        return dev, (f, tcol, yu, yb, pwrss, dof)

    def _value_and_grad(self, theta):
        dev, state = self._solve(theta)
        if state is None:
            return np.inf, None
        f, tcol, yu, yb, pwrss, dof = state
        s = self.s
        dlogA = dlogdet_scalar_terms(s, f, theta)
        if dlogA is None:
            return None
        db = lsolve(f.RX, yb, trans=True)  # β - β0
        u = f.backward(yu - f.LX @ db)
        zwr = self.Zr - self.ZX @ db - self._gram(tcol * u)  # Z'W r at the solution
        starts = s.u_offsets[:-1]
        g = dlogA - 2.0 * (dof / pwrss) * np.add.reduceat(zwr * u, starts)
        if self.reml and self.p:
            # d log|RX|²: 2 Σ_{l in t} Q_l · (Z'WZ Λ Q - Z'WX RX^{-T})_l, Q = A^{-1}Λ'Z'WX RX^{-T}
            Q = lsolve(f.RX, f.backward(f.LX).T).T
            M = self._gram(tcol[:, None] * Q) - lsolve(f.RX, self.ZX.T).T
            g = g + 2.0 * np.add.reduceat(np.sum(Q * M, axis=1), starts)
        return dev, g
