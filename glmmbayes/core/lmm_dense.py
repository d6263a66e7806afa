"""The profiled LMM deviance of a model with few random effects (small q), on one dense
cross-product matrix, as MixedModels.jl does for small models.

The W-weighted Gram matrix G of [Z, X, r] (r: the response less the offset and its weighted
least-squares fit on X, so pwrss keeps its digits under a large mean) is summed over the rows
once. At θ, with Λ̃ = blockdiag(Λ, I), M = Λ̃'GΛ̃ + blockdiag(I_q, 0) and one LAPACK Cholesky
of order q + p + 1 gives log|A| (the first q pivots), log|RX|² (the next p) and pwrss (the
last pivot squared). The θ-gradient takes the solution (u, β) from the same factor and the
inverse of its leading block (A for ML, the bordered [A, C; C', X'WX] for REML, whose
log-determinant is log|A| + log|RX|²):

    dD/dθ_j = 2 tr(M⁻¹ Λ̃'G T_j) - 2 (dof / pwrss) s' T_j u,   s = Z'W(r - X δβ - ZΛu),

T_j = dΛ/dθ_j (envelope theorem for pwrss). Any term structure -- crossed, nested, vector
valued -- costs the same few dozen numpy calls per evaluation and no pass over the rows, where
the blocked factor of `ScalarTermsLmm` or the row-wise `objective.lmm` take several times as
many. The fit reports the solution from the same factor (`summary`; tested against
`objective.lmm`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .linalg import cho_inverse, cholesky_lower, colwise_tril, lsolve, term_diag_blocks
from .objective import FixedCrossProducts, LmmSummary, fixed_cross_products

_LOG_2PI = math.log(2.0 * math.pi)

# above it the O(q³) factor and inverse per evaluation lose against the blocked factor of
# crossed intercepts (equal at q = 120 on 2,000 rows; 2.2 times as fast at q = 50); with a
# vector term the row-wise path they replace loses up to q = 200
DENSE_LMM_MAX_Q = 120
_DENSE_GRAM_MAX_WORK = 20_000_000  # n (q + p + 1)² flops: the Gram matrix by one dense product
# up to this order Λ̃'GΛ̃ by two small BLAS products with a dense Λ̃ (34: 7 against 14-23 µs by
# rows); above it Λ' is applied to G's rows term by term, O(N²) against O(N³)
_DENSE_LAMBDA_MAX = 64


class DenseLmm:
    """value_and_grad(θ) of the ML deviance or REML criterion of an LMM with q <= DENSE_LMM_MAX_Q."""

    def __init__(self, prob, reml: bool, fx: FixedCrossProducts | None = None):
        s = prob.structure
        fx = fixed_cross_products(prob) if fx is None else fx
        X, w = prob.X, prob.wt
        q, p = s.q, X.shape[1]
        N = q + p + 1
        if s.n * N * N <= _DENSE_GRAM_MAX_WORK:  # one BLAS product; else the sparse Z'
            B = np.hstack([s.z_dense(), X, fx.r[:, None]])
            G = B.T @ (w[:, None] * B)
        else:
            Zt = sp.vstack([s.z_transpose(i) for i in range(len(s.terms))]).tocsr()  # (q, n)
            ZtW = Zt.copy()
            ZtW.data = ZtW.data * w[ZtW.indices]
            G = np.empty((N, N))
            G[:q, :q] = (ZtW @ Zt.T).toarray()
            G[:q, q:-1] = ZtW @ X
            G[:q, -1] = ZtW @ fx.r
            G[q:-1, q:-1] = fx.XtX
            G[q:-1, -1] = fx.Xr
            G[-1, -1] = fx.rr
            G[q:, :q] = G[:q, q:].T
            G[-1, q:-1] = fx.Xr
        self.G, self.s, self.q, self.p = G, s, q, p
        self.n, self.sumlogw, self.reml, self.beta0 = fx.n, fx.sumlogw, reml, fx.beta0
        # scalar terms scale their columns by θ_t (one outer product); vector terms by λ_t
        self.scalar_theta = np.full(q, -1)
        self.vector_terms = []
        P, Q, seg = [], [], []  # per θ entry j and level: Λ's (row, column) entry in u's index
        for i, (k, m) in enumerate(zip(s.k, s.m)):
            off, toff = s.u_offsets[i], s.theta_offsets[i]
            if k == 1:
                self.scalar_theta[off : off + m] = toff
            else:
                self.vector_terms.append((i, off, m, k))
            levels = off + np.arange(m) * k
            for j, (r, c) in enumerate(zip(*colwise_tril(k))):
                P.append(levels + r)
                Q.append(levels + c)
                seg.append(np.full(m, toff + j))
        self.P, self.Q, self.seg = np.concatenate(P), np.concatenate(Q), np.concatenate(seg)
        self.scalar_rows = np.flatnonzero(self.scalar_theta >= 0)  # u entries of scalar terms
        self.scalar_index = self.scalar_theta[self.scalar_rows]  # their θ entries
        self.all_scalar = len(self.scalar_rows) == q
        self.diag_q = np.arange(q) * (N + 1)  # flat positions of A's diagonal in M
        self.dense_lambda = N <= _DENSE_LAMBDA_MAX
        self.lam_flat = self.P * N + self.Q  # Λ's entries in a dense Λ̃ (N, N)
        self.lam_base = np.diag(np.r_[np.zeros(q), np.ones(N - q)])  # Λ̃ at θ = 0

    def value_and_grad(self, theta: np.ndarray):
        try:
            return self._value_and_grad(np.asarray(theta, float))
        except np.linalg.LinAlgError:
            return np.inf, None

    def deviance(self, theta: np.ndarray) -> float:
        try:
            return self._solve(np.asarray(theta, float))[0]
        except np.linalg.LinAlgError:
            return np.inf

    def summary(self, theta: np.ndarray) -> LmmSummary | None:
        """The fit's report at θ from the same factor (None where the criterion is not finite:
        the caller asks the general path, which says why). LinAlgError where M cannot be
        factored."""
        dev, state = self._solve(np.asarray(theta, float))
        if state is None:
            return None
        L, _, pwrss, dof = state
        q = self.q
        u, db = self._modes(L)
        RX = L[q:-1, q:-1]
        return LmmSummary(dev, self.beta0 + db, u, pwrss / dof, cho_inverse(RX) if self.p else RX.copy(),
                          tuple(term_diag_blocks(cho_inverse(L[:q, :q]), self.s)))

    def _modes(self, L: np.ndarray):
        """(u, β - β0) from the factor: the last row of L is the solution's right-hand side."""
        x = lsolve(L[:-1, :-1], L[-1, :-1], trans=True)
        return x[: self.q], x[self.q :]

    def _lam_rows(self, theta: np.ndarray, lams, M: np.ndarray) -> np.ndarray:
        """Λ̃'M, a copy: Λ' applied to the rows of M that belong to u, the others as they are."""
        R = M.copy()
        scale = theta[self.scalar_index][:, None]
        if self.all_scalar:  # a slice: no fancy-indexed copy
            R[: self.q] *= scale
        elif len(scale):
            R[self.scalar_rows] *= scale
        for i, off, m, k in self.vector_terms:
            rows = slice(off, off + m * k)
            R[rows] = np.einsum("ba,mbn->man", lams[i], R[rows].reshape(m, k, -1)).reshape(m * k, -1)
        return R

    def _lam_u(self, theta: np.ndarray, lams, u: np.ndarray) -> np.ndarray:
        """Λ u."""
        out = u.copy()
        out[self.scalar_rows] *= theta[self.scalar_index]
        for i, off, m, k in self.vector_terms:
            out[off : off + m * k] = (u[off : off + m * k].reshape(m, k) @ lams[i].T).ravel()
        return out

    def _solve(self, theta):
        if self.dense_lambda:
            lam = self.lam_base.copy()
            lam.ravel()[self.lam_flat] = theta[self.seg]
            M = lam.T @ self.G @ lam
        else:
            lam = self.s.lambdas(theta)
            M = self._lam_rows(theta, lam, self._lam_rows(theta, lam, self.G).T)  # Λ̃'GΛ̃ (G symmetric)
        M.ravel()[self.diag_q] += 1.0
        L = cholesky_lower(M)  # LinAlgError where not positive definite (also pwrss <= 0)
        piv = np.log(np.diagonal(L))
        q, p, n = self.q, self.p, self.n
        pwrss = float(L[-1, -1]) ** 2
        dof = n - p if self.reml else n
        if dof <= 0 or not pwrss > 0:
            return np.inf, None
        dev = 2.0 * float(piv[:q].sum()) + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof)) - self.sumlogw
        if self.reml:
            dev += 2.0 * float(piv[q:-1].sum())
        return dev, (L, lam, pwrss, dof)

    def _value_and_grad(self, theta):
        dev, state = self._solve(theta)
        if state is None:
            return np.inf, None
        L, lam, pwrss, dof = state
        q, G = self.q, self.G
        Lb = L[:-1, :-1]
        u, db = self._modes(L)
        if self.dense_lambda:
            lam_u = lam[:q, :q] @ u
            R = lam[:-1, :-1].T @ G[:-1, :q]  # Λ̃'G's u columns, not Λ̃'GΛ̃ (Λ may be singular)
        else:
            lam_u = self._lam_u(theta, lam, u)
            R = self._lam_rows(theta, lam, G[:-1, :q])
        s_res = G[:q, -1] - G[:q, q:-1] @ db - G[:q, :q] @ lam_u  # Z'W r at the solution
        if self.reml:  # the bordered inverse's rows of u
            Minv = cho_inverse(Lb)[:q]
        else:
            Minv, R = cho_inverse(Lb[:q, :q]), R[:q]
        trace = np.einsum("ni,in->n", Minv[self.Q], R[:, self.P])  # (M⁻¹Λ̃'G)[Q, P]
        terms = 2.0 * trace - 2.0 * (dof / pwrss) * s_res[self.P] * u[self.Q]
        return dev, np.bincount(self.seg, weights=terms, minlength=self.s.ntheta)
