"""The profiled LMM deviance of a model with one random-effect term, on cross-products.

With one term, A = Λ'Z'WZΛ + I is block diagonal (one k x k block per level) and every
quantity of lme4's `devfun` and of its θ-gradient is a function of θ-free per-level
cross-products (Z_j'WZ_j, Z_j'WX, Z_j'Wr) and of X'WX, X'Wr, r'Wr, as in MixedModels.jl.
They are summed over the rows once; an evaluation then costs O(m k² p), not O(n), and a
handful of batched numpy calls. r is the response less the offset and its weighted
least-squares fit on X, so the penalized residual sum of squares, which comes out as a
difference, loses no digits to a large mean (`objective.fixed_cross_products`).

The optimizer uses this objective and the fit reports its solution (`summary`); both must
agree with the general `objective.lmm` (tested).
"""

from __future__ import annotations

import math

import numpy as np

from .linalg import cho_inverse, colwise_tril, lsolve, pattern_product, theta_to_lower
from .objective import FixedCrossProducts, LmmSummary, fixed_cross_products

_LOG_2PI = math.log(2.0 * math.pi)


class SingleTermLmm:
    """value_and_grad(θ) of the ML deviance or REML criterion of a one-term LMM."""

    def __init__(self, prob, reml: bool, fx: FixedCrossProducts | None = None):
        (t,) = prob.structure.terms
        X, w = prob.X, prob.wt
        n, p = X.shape
        m, k = t.nlevels, t.k
        fx = fixed_cross_products(prob) if fx is None else fx
        Zw = t.X * w[:, None]  # (n, k)
        outer = (Zw[:, :, None] * t.X[:, None, :]).reshape(n, k * k)
        self.B0 = _level_sums(t.codes, outer, m).reshape(m, k, k)
        self.ZX = _level_sums(t.codes, (Zw[:, :, None] * X[:, None, :]).reshape(n, k * p), m).reshape(m, k, p)
        self.zr = _level_sums(t.codes, Zw * fx.r[:, None], m)
        self.XtX, self.Xr, self.rr, self.beta0 = fx.XtX, fx.Xr, fx.rr, fx.beta0
        # rows of weight 0 carry no information: neither observations nor in Σ log w
        self.n, self.sumlogw = fx.n, fx.sumlogw
        self.k, self.p, self.reml = k, p, reml
        self.rows, self.cols = colwise_tril(k)

    def value_and_grad(self, theta: np.ndarray):
        try:
            return self._value_and_grad(np.asarray(theta, float))
        except np.linalg.LinAlgError:
            return np.inf, None

    def deviance(self, theta: np.ndarray) -> float:
        return self.value_and_grad(theta)[0]

    def summary(self, theta: np.ndarray) -> LmmSummary | None:
        """The fit's report at θ from the same per-level factors (None where the criterion is
        not finite: the caller asks the general path, which says why). LinAlgError where A or
        the Schur complement cannot be factored."""
        st = self._solve(np.asarray(theta, float))
        if st is None:
            return None
        dev, _, _, _, Linv, _, RX, pwrss, dof, db, u = st
        return LmmSummary(dev, self.beta0 + db, u.ravel(), pwrss / dof, cho_inverse(RX) if self.p else RX,
                          (np.transpose(Linv, (0, 2, 1)) @ Linv,))

    def _solve(self, theta):
        """The criterion and the pieces of the solution at θ; None where it is not finite."""
        k, n, p = self.k, self.n, self.p
        lam = theta_to_lower(theta, k)
        B0L = self.B0 @ lam  # (m, k, k): B0_j Λ
        A = lam.T @ B0L
        A[:, np.arange(k), np.arange(k)] += 1.0
        L = np.linalg.cholesky(A)
        Linv = np.linalg.inv(L)
        ldA = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        C = lam.T @ self.ZX  # (m, k, p): Λ'Z_j'WX
        LC = Linv @ C
        lu = np.einsum("jab,jb->ja", Linv, self.zr @ lam)  # L_j^{-1} Λ'Z_j'Wr
        S = self.XtX - np.einsum("jkp,jkq->pq", LC, LC)
        RX = np.linalg.cholesky(S) if p else np.zeros((0, 0))
        yb = lsolve(RX, self.Xr - np.einsum("jkp,jk->p", LC, lu))
        pwrss = self.rr - float(np.sum(lu * lu)) - float(yb @ yb)
        dof = n - p if self.reml else n
        if dof <= 0 or not pwrss > 0:
            return None
        dev = ldA + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof)) - self.sumlogw
        if self.reml and p:
            dev += 2.0 * float(np.sum(np.log(np.diag(RX))))
        db = lsolve(RX, yb, trans=True)  # β - β0
        u = np.einsum("jba,jb->ja", Linv, lu - LC @ db)  # L_j^{-T}(...)
        return dev, lam, B0L, C, Linv, LC, RX, pwrss, dof, db, u

    def _value_and_grad(self, theta):
        st = self._solve(theta)
        if st is None:
            return np.inf, None
        dev, lam, B0L, C, Linv, LC, RX, pwrss, dof, db, u = st
        p = self.p
        # gradient: d pwrss = -2 (Z'Wr)' dΛ û (envelope theorem), d log|A| [+ log|RX|²] from
        # the per-level diagonal blocks of the inverse of A [bordered by X for REML]
        s = self.zr - np.einsum("jab,jb->ja", B0L, u) - self.ZX @ db  # Z_j'W r at the solution
        T3 = s.T @ u  # Σ_j s_j û_j'
        Ainv = np.transpose(Linv, (0, 2, 1)) @ Linv
        T2 = None
        if self.reml and p:
            Sinv = lsolve(RX, lsolve(RX, np.eye(p)), trans=True)
            G = Ainv @ C  # (m, k, p)
            GS = G @ Sinv
            Ainv = Ainv + GS @ np.transpose(G, (0, 2, 1))
            T2 = -np.einsum("jap,jbp->ab", self.ZX, GS)  # Σ_j ZX_j M_bu,j
        T1 = np.einsum("jab,jcb->ac", Ainv, B0L)  # Σ_j Ainv_j Λ'B0_j  (B0 symmetric)
        r, c = self.rows, self.cols
        g = 2.0 * T1[c, r] - 2.0 * (dof / pwrss) * T3[r, c]
        if T2 is not None:
            g = g + 2.0 * T2[r, c]
        return dev, g


def _level_sums(codes: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    """Σ over the rows of each level, column by column: (m, ncol)."""
    return pattern_product(codes, np.arange(len(codes)), np.ones(len(codes)), values, m)
