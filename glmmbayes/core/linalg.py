"""Blocked Cholesky factor of the penalized system, in the manner of MixedModels.jl.

The random effects are b = Λ(θ) u. Each term contributes a block of columns of ZΛ; within a
term the columns are ordered level-major (the k coefficients of level j are contiguous). The
matrix we factor is

    A = Λ'Z' W Z Λ + I   (optionally bordered by X:  [[A, Λ'Z'WX], [X'WZΛ, X'WX]]).

Terms are ordered by decreasing number of levels. The first term's block A11 is block diagonal
(k x k blocks, factored in one batched call); the remaining terms are stacked into one dense
Schur complement S = A22 - L21 L21'. Z is never formed densely.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs, dtrtri, dtrtrs

from .threads import lapack_threads


def lsolve(L: np.ndarray, b: np.ndarray, trans: bool = False) -> np.ndarray:
    """L^{-1} b (or L^{-T} b) for a lower-triangular L, by LAPACK directly: the scipy.linalg
    wrapper's checks cost more than the solve at the sizes of most models. L' is an
    upper-triangular Fortran-ordered view of C-ordered L, so nothing is copied."""
    if L.shape[0] == 0:  # no fixed effects: nothing to solve (LAPACK rejects empty systems)
        return np.zeros(b.shape)
    return dtrtrs(L.T, b, lower=0, trans=0 if trans else 1)[0]


def cholesky_lower(S: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of S from S's lower triangle alone (LAPACK potrf, which never
    reads the other triangle); LinAlgError where S is not positive definite. S is overwritten."""
    if S.shape[0] == 0:
        return S
    # S' is a Fortran-ordered view whose upper triangle is S's lower one: no copy
    with lapack_threads(S.shape[0]):
        U, info = dpotrf(S.T, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError("the matrix is not positive definite")
    return U.T


def cho_inverse_lower(L: np.ndarray) -> np.ndarray:
    """(L L')^{-1} with only its lower triangle filled (zeros above), C-ordered, from the lower
    Cholesky factor L (LAPACK potri: a third of the work of solving against the identity).
    For the callers that gather selected entries (a, b) with a >= b."""
    # L' is the upper factor of a Fortran-ordered view; potri fills its upper triangle, which
    # is the lower one of the C-ordered transpose, and leaves L''s zeros in the other
    with lapack_threads(L.shape[0]):
        return dpotri(L.T, lower=0)[0].T


def cho_inverse(L: np.ndarray) -> np.ndarray:
    """(L L')^{-1}, both triangles, from its lower Cholesky factor L."""
    return symmetrized_lower(cho_inverse_lower(L))


def symmetrized_lower(low: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose lower triangle is that of `low` (zeros above), as a new array:
    low + low' with the diagonal halved -- exact (doubling and halving are), and a third of the
    time of np.tril's masked copy on the small orders of a fit's evaluations."""
    out = low + low.T
    out.ravel()[:: out.shape[0] + 1] *= 0.5
    return out


_LEAD_MIN = 64  # below this order one LAPACK call beats eliminating a diagonal lead first


def lead_cholesky(S: np.ndarray, d: int) -> np.ndarray:
    """`cholesky_lower` of S whose leading d x d block is diagonal: that block's square roots,
    the column scaling G = S21 D^{-1/2} and the Cholesky factor of S22 - G G' (order n - d), so
    the cost is (n - d)² d / 2 + (n - d)³ / 3 instead of n³ / 3. Reads S's lower triangle only."""
    n = S.shape[0]
    if d == 0 or n < _LEAD_MIN:
        return cholesky_lower(S)
    head = np.diagonal(S)[:d]
    if not np.all(head > 0.0):
        raise np.linalg.LinAlgError("the matrix is not positive definite")
    l1 = np.sqrt(head)
    L = np.zeros((n, n))
    L[np.arange(d), np.arange(d)] = l1
    if d == n:  # S diagonal
        return L
    G = L[d:, :d]
    np.divide(S[d:, :d], l1, out=G)
    S2 = S[d:, d:] - dsyrk(1.0, G, lower=1)  # G G', lower triangle (all the Cholesky reads)
    L[d:, d:] = cholesky_lower(S2)
    return L


def lead_inverse_lower(L: np.ndarray, d: int) -> np.ndarray:
    """`cho_inverse_lower` of a `lead_cholesky` factor L = [[D, 0], [G, L2]] (D diagonal): with
    K = L2^{-1} G D^{-1}, the blocks of (L L')^{-1} are (L2 L2')^{-1}, -L2^{-T} K and
    D^{-2} + K'K; the LAPACK calls are of order n - d."""
    n = L.shape[0]
    if d == 0 or n < _LEAD_MIN:
        return cho_inverse_lower(L)
    dinv = 1.0 / np.diagonal(L)[:d]
    if d == n:
        return np.diag(dinv * dinv)
    L2 = np.ascontiguousarray(L[d:, d:])
    K = lsolve(L2, L[d:, :d] * dinv)
    out = np.zeros_like(L)
    out[d:, d:] = cho_inverse_lower(L2)
    out[d:, :d] = -lsolve(L2, K, trans=True)
    top = dsyrk(1.0, K, trans=1, lower=1)  # K'K, lower triangle
    top[np.arange(d), np.arange(d)] += dinv * dinv
    out[:d, :d] = top
    return out


def term_diag_blocks(Ainv: np.ndarray, s) -> list[np.ndarray]:
    """Per term, the (m, k, k) diagonal blocks of a dense A⁻¹ (q, q) in u's order."""
    out = []
    for i, (k, m) in enumerate(zip(s.k, s.m)):
        idx = s.u_offsets[i] + np.arange(m)[:, None, None] * k + np.arange(k)
        out.append(Ainv[idx, np.transpose(idx, (0, 2, 1))])
    return out


def theta_to_lower(theta_t: np.ndarray, k: int) -> np.ndarray:
    """k x k lower-triangular factor from θ stacked column-wise (lme4's order)."""
    T = np.zeros((k, k))
    rows, cols = colwise_tril(k)
    T[rows, cols] = theta_t
    return T


@lru_cache(maxsize=None)
def colwise_tril(k: int):
    cols, rows = np.triu_indices(k)  # column-wise enumeration of the lower triangle
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def theta_diag_mask(k: int) -> np.ndarray:
    rows, cols = colwise_tril(k)
    return rows == cols


_SPARSE_PRODUCTS_MIN_ROWS = 5_000
# Small designs hold ZΛ as one dense (n, q) matrix: below about n q² = 4e5 flops a dense Gram
# product and one LAPACK Cholesky take less time than the blocked factor's dozens of small
# numpy calls (the cost of a small fit is the number of calls, not the arithmetic). A single
# term's blocked factor is a few batched calls already: dense only below n q² = 1e5 there.
_DENSE_MAX_WORK = (100_000, 400_000)  # one term, several terms
_DENSE_MAX_Q = 200


class ZLValues(list):
    """The per-row values of ZΛ for each term (a list of (n, k_t) arrays) with the Λ_t they came
    from; on large designs (`sparse_products`) the products with ZΛ and (ZΛ)' use the θ-free
    sparse Z and apply Λ per level; on small ones ZΛ is also kept whole (`dense`, (n, q))."""

    def __init__(self, values, lambdas, sparse_products: bool, dense: np.ndarray | None = None):
        super().__init__(values)
        self.lambdas = lambdas
        self.sparse_products = sparse_products
        self.dense = dense
        self._bordered = None

    def bordered(self, X: np.ndarray) -> np.ndarray:
        """[ZΛ, X] (n, q + p), built once per θ and X."""
        if self._bordered is None or self._bordered[0] is not X:
            self._bordered = (X, np.hstack([self.dense, X]))
        return self._bordered[1]


def _sparse_lambdas(V):
    """V's Λ_t where the products go through the sparse Z, else None (one bincount per column)."""
    return V.lambdas if getattr(V, "sparse_products", False) else None


class ReStructure:
    """θ-independent structure of the random-effect terms of a design (index arrays only)."""

    def __init__(self, terms):
        self.terms = tuple(terms)
        self.k = [t.k for t in self.terms]
        self.m = [t.nlevels for t in self.terms]
        self.q_t = [k * m for k, m in zip(self.k, self.m)]
        self.q = int(sum(self.q_t))
        self.q1 = self.q_t[0] if self.terms else 0
        self.q2 = self.q - self.q1
        self.n = len(self.terms[0].codes) if self.terms else 0
        self.theta_sizes = [k * (k + 1) // 2 for k in self.k]
        self.theta_offsets = np.concatenate([[0], np.cumsum(self.theta_sizes)]).astype(int)
        self.u_offsets = np.concatenate([[0], np.cumsum(self.q_t)]).astype(int)
        lower = []
        for k in self.k:
            lower.append(np.where(theta_diag_mask(k), 0.0, -np.inf))
        self.theta_lower = np.concatenate(lower) if lower else np.zeros(0)
        self._col_index = [
            (t.codes[:, None] * t.k + np.arange(t.k)[None, :]) for t in self.terms
        ]
        if len(self.terms) > 1:
            # column indices of the tail terms (2nd, 3rd, ...) in the stacked tail block
            idx = [self._col_index[i] + (self.u_offsets[i] - self.q1) for i in range(1, len(self.terms))]
            self._tail_indices = np.hstack(idx).ravel()
        self.dense_zl = (0 < self.q <= _DENSE_MAX_Q
                         and self.n * self.q * self.q <= _DENSE_MAX_WORK[len(self.terms) > 1])
        if self.dense_zl:  # flat positions of each term's values V_t (row-major) in the dense ZΛ
            rows = np.arange(self.n)[:, None] * self.q
            self._dense_flat = np.concatenate(
                [(rows + self.u_offsets[i] + self._col_index[i]).ravel() for i in range(len(self.terms))])

    def level_order(self, i: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row order, rows per level, first sorted row of each level) for term i: the rows
        sorted by level, so that per-level sums are contiguous reductions (np.add.reduceat).
        Every level has rows (the design keeps only the levels that occur)."""
        cache = self.__dict__.setdefault("_level_order", {})
        if i not in cache:
            t = self.terms[i]
            # numpy sorts 16-bit integers by radix (1e6 rows: 14 ms against 100 ms for int64)
            key = t.codes.astype(np.uint16) if t.nlevels <= 1 << 16 else t.codes
            order = np.argsort(key, kind="stable")
            counts = np.bincount(t.codes, minlength=t.nlevels)
            cache[i] = (order, counts, np.cumsum(counts) - counts)
        return cache[i]

    @property
    def ntheta(self) -> int:
        return int(self.theta_offsets[-1])

    def theta_start(self) -> np.ndarray:
        """lme4's default start: identity relative covariance."""
        return np.concatenate([np.where(theta_diag_mask(k), 1.0, 0.0) for k in self.k])

    def theta_scale(self) -> np.ndarray:
        """Per θ entry, 1 / the root mean square of the random-effect column of its row where
        that exceeds 1: the natural unit of θ for a covariate on a large scale (a slope on
        days and on seconds differ by 86400), where θ = 1 as a start and absolute tolerances
        mean nothing. Intercepts and columns of RMS up to 1 (indicators) keep the unit 1,
        which suits them better (an urban indicator's slope took 23 % more evaluations)."""
        out = []
        for t in self.terms:
            rows, _ = colwise_tril(t.k)
            rms = np.sqrt(np.mean(t.X * t.X, axis=0)) if len(t.X) else np.ones(t.k)
            rms = np.where(np.isfinite(rms) & (rms > 1.0), rms, 1.0)
            out.append(1.0 / rms[rows])
        return np.concatenate(out) if out else np.zeros(0)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [
            theta_to_lower(theta[self.theta_offsets[i] : self.theta_offsets[i + 1]], k)
            for i, k in enumerate(self.k)
        ]

    def zl_values(self, theta: np.ndarray) -> ZLValues:
        """Per-row values of ZΛ for each term: V_t = X_t T_t, shape (n, k_t)."""
        lams = self.lambdas(theta)
        values = [t.X @ T for t, T in zip(self.terms, lams)]
        dense = None
        if self.dense_zl:
            dense = np.zeros(self.n * self.q)
            dense[self._dense_flat] = np.concatenate([v.ravel() for v in values])
            dense = dense.reshape(self.n, self.q)
        # below a few thousand rows scipy's per-call overhead outweighs the streaming products
        return ZLValues(values, lams, self.n >= _SPARSE_PRODUCTS_MIN_ROWS, dense)

    def z_dense(self) -> np.ndarray:
        """Z (Λ = I) as one dense (n, q) array."""
        Z = np.zeros((self.n, self.q))
        rows = np.arange(self.n)[:, None]
        for i, t in enumerate(self.terms):
            Z[rows, self.u_offsets[i] + self._col_index[i]] = t.X
        return Z

    def z_transpose(self, i: int) -> sp.csc_matrix:
        """Z_t' as a (m k, n) CSC matrix (one column per row of the data): its products with
        vectors and (n, p) matrices stream over the rows once, scattering into the small
        per-level output, several times faster than one bincount per column."""
        cache = self.__dict__.setdefault("_z_transpose", {})
        if i not in cache:
            t = self.terms[i]
            n, k = len(t.codes), t.k
            indptr = np.arange(0, n * k + 1, k)
            cache[i] = sp.csc_matrix((np.ascontiguousarray(t.X, dtype=float).ravel(),
                                      self._col_index[i].ravel(), indptr),
                                     shape=(t.nlevels * k, n))
        return cache[i]

    def zl_mult(self, V, u: np.ndarray) -> np.ndarray:
        """ZΛ u (length n)."""
        if getattr(V, "dense", None) is not None:
            return V.dense @ u
        lams = _sparse_lambdas(V)
        if lams is None:
            return self._zl_mult_rows(V, u)
        out = np.zeros(self.n)
        off = self.u_offsets
        for i, (k, m) in enumerate(zip(self.k, self.m)):
            U = u[off[i] : off[i + 1]].reshape(m, k)
            out += self.z_transpose(i).T @ (U @ lams[i].T).ravel()
        return out

    def _zl_mult_rows(self, V, U: np.ndarray) -> np.ndarray:
        """ZΛ U (U of shape (q,) or (q, c)) from the per-row values of ZΛ: a gather of U at each
        row's columns per term (designs below the sparse-product size)."""
        out = np.zeros((self.n,) + U.shape[1:])
        off = self.u_offsets
        for i, (k, t) in enumerate(zip(self.k, self.terms)):
            Ui = U[off[i] : off[i + 1]]
            if k == 1:
                v = V[i][:, 0]
                out += (v if U.ndim == 1 else v[:, None]) * Ui[t.codes]
            else:
                out += np.einsum("nk,nk...->n...", V[i], Ui[self._col_index[i]])
        return out

    def z_transpose_squared(self) -> sp.csc_matrix:
        """Z_1' with squared entries (a scalar first term): Σ_j w x² per level in one pass."""
        if "_z_sq" not in self.__dict__:
            z = self.z_transpose(0)
            self._z_sq = sp.csc_matrix((z.data ** 2, z.indices, z.indptr), shape=z.shape)
        return self._z_sq

    def zl_tmult(self, V, r: np.ndarray) -> np.ndarray:
        """Λ'Z' r (length q)."""
        if getattr(V, "dense", None) is not None:
            return V.dense.T @ r
        out = np.empty(self.q)
        lams = _sparse_lambdas(V)
        off = self.u_offsets
        for i, (k, m) in enumerate(zip(self.k, self.m)):
            if lams is not None:
                S = (self.z_transpose(i) @ r).reshape(m, k)
                out[off[i] : off[i + 1]] = (S @ lams[i]).ravel()
            elif k == 1:
                out[off[i] : off[i + 1]] = np.bincount(self.terms[i].codes, weights=V[i][:, 0] * r, minlength=m)
            else:  # one bincount for the k columns: level-major flat index j k + a
                out[off[i] : off[i + 1]] = np.bincount(self._col_index[i].ravel(),
                                                       weights=(V[i] * r[:, None]).ravel(), minlength=m * k)
        return out

    def zl_mult_matrix(self, V, U: np.ndarray) -> np.ndarray:
        """ZΛ U for a (q, p) matrix U (p may be 0)."""
        if getattr(V, "dense", None) is not None:
            return V.dense @ U
        if U.shape[1] == 0:
            return np.zeros((self.n, 0))
        lams = _sparse_lambdas(V)
        if lams is None:
            return self._zl_mult_rows(V, U)
        out = np.zeros((self.n, U.shape[1]))
        for i, t in enumerate(self.terms):
            Ui = U[self.u_offsets[i] : self.u_offsets[i + 1]].reshape(t.nlevels, t.k, -1)
            out += self.z_transpose(i).T @ np.einsum("ab,mbp->map", lams[i], Ui).reshape(-1, U.shape[1])
        return out

    def zl_tmult_matrix(self, V, R: np.ndarray) -> np.ndarray:
        """Λ'Z' R for an (n, p) matrix R (p may be 0: a model without fixed effects): the sparse
        Z' product at any size (its per-call overhead is paid once for all p columns; a bincount
        over the flat (column of ZΛ, column of R) index took 2-6 times as long even at n = 400)."""
        if getattr(V, "dense", None) is not None:
            return V.dense.T @ R
        if R.shape[1] == 0:
            return np.zeros((self.q, 0))
        out = np.empty((self.q, R.shape[1]))
        for i, t in enumerate(self.terms):
            S = np.asarray(self.z_transpose(i) @ R).reshape(t.nlevels, t.k, R.shape[1])
            out[self.u_offsets[i] : self.u_offsets[i + 1]] = np.einsum(
                "mbp,ba->map", S, V.lambdas[i]).reshape(-1, R.shape[1])
        return out

    def cross_pattern(self):
        """Index maps (θ-independent, built once) that accumulate A21 = M2'WM1 and A22 = M2'WM2
        with bincount instead of sparse matrix products."""
        pat = self.__dict__.get("_cross_pattern")
        if pat is None:
            k0 = self.k[0]
            width = sum(self.k[1:])
            hc = self._col_index[0]  # (n, k0)
            tc = self._tail_indices.reshape(self.n, width)  # (n, width)
            lin = (tc[:, :, None] * self.q1 + hc[:, None, :]).ravel()
            uniq, inv21 = np.unique(lin, return_inverse=True)
            rows21, cols21 = uniq // self.q1, uniq % self.q1
            indptr21 = np.concatenate([[0], np.cumsum(np.bincount(rows21, minlength=self.q2))])
            idx22 = (tc[:, :, None] * self.q2 + tc[:, None, :]).ravel()
            pat = {"inv21": inv21, "cols21": cols21, "rows21": rows21, "indptr21": indptr21,
                   "nnz21": len(uniq), "idx22": idx22, "width": width, "k0": k0,
                   "head_level": _head_level_of_blocks(rows21, cols21, k0)}
            self.__dict__["_cross_pattern"] = pat
        return pat

    def diagonal_lead(self) -> int:
        """How many leading columns of S = A22 - L21 L21' form a diagonal block whatever θ and
        the weights: the second term's levels where it is scalar and no level of the first term
        meets two of them (a nested design's middle level under an observation-level or other
        nested first term), else 0. The factor eliminates them first (`lead_cholesky`)."""
        if "_diagonal_lead" not in self.__dict__:
            d = 0
            if len(self.terms) > 1 and self.k[1] == 1:
                pat = self.cross_pattern()
                m1 = self.terms[1].nlevels
                first = pat["rows21"] < m1
                if np.max(np.bincount(pat["cols21"][first], minlength=self.q1), initial=0) <= 1:
                    d = m1
            self.__dict__["_diagonal_lead"] = d
        return self.__dict__["_diagonal_lead"]

    def sparse_cross(self) -> bool:
        """Whether A21's pattern is sparse enough (under 5 % filled) that products over its
        nonzeros beat dense BLAS on the q2 x q1 block."""
        return len(self.terms) > 1 and self.cross_pattern()["nnz21"] <= 0.05 * self.q1 * self.q2

    def _by_column(self):
        """The pattern's nonzeros by column of L21 (by row within a column, the pattern's own
        order being by row): (their order, the first sorted position and the count of each
        column)."""
        pat = self.cross_pattern()
        if "by_column" not in pat:
            cols = pat["cols21"]
            cnt = np.bincount(cols, minlength=self.q1)
            pat["by_column"] = (np.argsort(cols, kind="stable"), np.cumsum(cnt) - cnt, cnt)
        return pat["by_column"]

    def column_pairs(self, limit: int = 20_000_000):
        """For a sparse L21 with the A21 pattern: the pairs of nonzeros (p1, p2) in one column
        whose rows fall in S's lower triangle (row of p1 >= row of p2), as flat indices into S
        (q2 x q2), so the lower triangle of L21 L21' is one bincount; `mult` is 2 off the
        diagonal and 1 on it (the full symmetric sum). None if too many."""
        pat = self.cross_pattern()
        if "pairs" not in pat:
            cols, rows = pat["cols21"], pat["rows21"]
            # each nonzero pairs with itself and the ones above it in its column: the lower
            # triangle directly. The first of a pair runs over the pattern's own order (by row),
            # so S is written row by row without sorting the pairs
            order, col_start, _ = self._by_column()
            at = np.empty(len(order), dtype=np.int64)
            at[order] = np.arange(len(order))  # each nonzero's sorted position
            first = col_start[cols]
            cnt = at - first + 1
            total = int(np.sum(cnt))
            if total > limit:
                pat["pairs"] = None
            else:
                p1 = np.repeat(np.arange(len(order)), cnt)
                p2 = order[np.repeat(first - np.cumsum(cnt) + cnt, cnt) + np.arange(total)]
                flat = rows[p1] * self.q2 + rows[p2]
                mult = np.where(p1 == p2, 1.0, 2.0)
                pat["pairs"] = (p1, p2, flat, mult)
        return pat["pairs"]

    def projection_index(self, limit: int = 20_000_000):
        """θ-free gathers for the row projections of a scalar head on a sparse pattern (None
        if too many entries): for each row i, tail slot c and nonzero e of L21's column at
        row i's head level, the flat index of S^{-1}[cols(i, c), row(e)] in S's lower triangle
        (k_flat), e (k_e) and the output slot i·width + c (k_out); for each row, the flat
        indices of S^{-1} at its pairs of tail columns (tt_flat, (n, width, width))."""
        pat = self.cross_pattern()
        if "projection" not in pat:
            rows21, cols21, q2 = pat["rows21"], pat["cols21"], self.q2
            width = pat["width"]
            order, start, cnt = self._by_column()
            tcols = self._tail_indices.reshape(self.n, width)
            slot_j = np.repeat(self.terms[0].codes, width)  # head level of each (row, slot)
            per = cnt[slot_j]
            total = int(np.sum(per)) + self.n * width * width
            if total > limit:
                pat["projection"] = None
            else:
                slot = np.repeat(np.arange(self.n * width), per)
                within = np.arange(len(slot)) - np.repeat(np.cumsum(per) - per, per)
                e = order[start[slot_j[slot]] + within]
                a, b = tcols.ravel()[slot], rows21[e]

                def lower(x, y):
                    return np.maximum(x, y) * q2 + np.minimum(x, y)

                pat["projection"] = {"k_flat": lower(a, b), "k_e": e, "k_out": slot,
                                     "tt_flat": lower(tcols[:, :, None], tcols[:, None, :])}
        return pat["projection"]


def _head_level_of_blocks(rows21: np.ndarray, cols21: np.ndarray, k0: int) -> np.ndarray | None:
    """For a vector head (k0 > 1): the head level of each block of k0 consecutive pattern
    entries, where the pattern is such blocks (a row's columns j k0, ..., j k0 + k0 - 1 of one
    level j, in order: every data row touches all k0 columns of its level); else None."""
    if k0 == 1 or len(cols21) % k0:
        return None
    c, r = cols21.reshape(-1, k0), rows21.reshape(-1, k0)
    level = c[:, 0] // k0
    if not (np.all(c == level[:, None] * k0 + np.arange(k0)) and np.all(r == r[:, :1])):
        return None
    return level


def _batched_chol(B: np.ndarray) -> np.ndarray:
    if B.shape[1] == 1:
        if not np.all(B > 0):  # negative observed information can make a block indefinite
            raise np.linalg.LinAlgError("a 1 x 1 block is not positive")
        return np.sqrt(B)
    return np.linalg.cholesky(B)


def _batched_inv_lower(L: np.ndarray) -> np.ndarray:
    if L.shape[1] == 1:
        return 1.0 / L
    return np.linalg.inv(L)


class _Bordered:
    """What the factors share about the X border: LX = L^{-1} Λ'Z'WX and RX, the lower
    Cholesky factor of X'WX - LX'LX."""

    LX: np.ndarray | None
    RX: np.ndarray | None

    @property
    def ldRX2(self) -> float:
        return 2.0 * float(np.sum(np.log(np.abs(np.diag(self.RX)))))

    def rx_inverse(self) -> np.ndarray:
        """(RX RX')^{-1}: the unscaled covariance of beta given θ."""
        Rinv = lsolve(self.RX, np.eye(self.RX.shape[0]))
        return Rinv.T @ Rinv


@dataclass
class Factor(_Bordered):
    """Cholesky factor of A (and of the X border when given)."""

    s: ReStructure
    L1inv: np.ndarray  # (m0, k0, k0) inverses of the diagonal blocks of the first term
    logdet_L1: float
    L21_csr: sp.csr_matrix | None
    L22: np.ndarray | None
    LX: np.ndarray | None = None  # L^{-1} Λ'Z'WX, (q, p)
    RX: np.ndarray | None = None  # lower Cholesky of X'WX - LX'LX, (p, p)
    L21p: np.ndarray | None = None  # L21's values on the A21 pattern (it has A21's pattern)
    head_pairs: tuple | None = None  # (positions in S, weights): the head's trace terms (`FixedPairs`)
    L21d: np.ndarray | None = None  # L21 whole (q2, q1) where A21's pattern is dense

    @property
    def L21v(self) -> np.ndarray | None:
        """L21's values on the pattern where the head term is scalar (the selected-inverse
        routines that read one value per head column), else None."""
        return self.L21p if self.s.k[0] == 1 else None

    @property
    def L21(self) -> sp.csr_matrix | None:
        if self.L21_csr is None and self.L21p is not None:
            pat = self.s.cross_pattern()
            self.L21_csr = sp.csr_matrix((self.L21p, pat["cols21"], pat["indptr21"]),
                                         shape=(self.s.q2, self.s.q1))
        return self.L21_csr

    def _l21_mult(self, y1: np.ndarray) -> np.ndarray:
        if self.L21d is not None:
            return self.L21d @ y1
        if self.L21p is not None:  # no sparse-matrix object on the hot path
            pat = self.s.cross_pattern()
            return pattern_product(pat["rows21"], pat["cols21"], self.L21p, y1, self.s.q2)
        return self.L21 @ y1

    def _l21t_mult(self, x2: np.ndarray) -> np.ndarray:
        if self.L21d is not None:
            return self.L21d.T @ x2
        if self.L21p is not None:
            pat = self.s.cross_pattern()
            return pattern_product(pat["cols21"], pat["rows21"], self.L21p, x2, self.s.q1)
        return self.L21.T @ x2

    def tail_inverse_lower(self) -> np.ndarray:
        """S^{-1} = (L22 L22')^{-1}, its lower triangle (zeros above)."""
        return lead_inverse_lower(self.L22, self.s.diagonal_lead())

    def tail_inverse(self) -> np.ndarray:
        """S^{-1}, both triangles."""
        return symmetrized_lower(self.tail_inverse_lower())

    @property
    def ldL2(self) -> float:
        """log |L|^2 = log det A."""
        out = 2.0 * self.logdet_L1
        if self.L22 is not None:
            out += 2.0 * float(np.sum(np.log(np.diag(self.L22))))
        return out

    # L^{-1} and L^{-T} for the random-effect part ------------------------------------
    def _head_apply(self, M: np.ndarray, x: np.ndarray, transpose: bool) -> np.ndarray:
        m, k = M.shape[0], M.shape[1]
        X = x.reshape(m, k, -1)
        if k == 1:
            return (M[:, 0, 0][:, None] * X[:, 0, :]).reshape(x.shape)
        sub = "mji,mjc->mic" if transpose else "mij,mjc->mic"
        return np.einsum(sub, M, X).reshape(x.shape)

    def forward(self, b: np.ndarray) -> np.ndarray:
        """y = L^{-1} b (b may be (q,) or (q, c))."""
        q1 = self.s.q1
        y1 = self._head_apply(self.L1inv, b[:q1], transpose=False)
        if self.L22 is None:
            return y1
        rhs2 = b[q1:] - self._l21_mult(y1)
        y2 = lsolve(self.L22, rhs2)
        return np.concatenate([y1, y2], axis=0)

    def backward(self, y: np.ndarray) -> np.ndarray:
        """x = L^{-T} y."""
        q1 = self.s.q1
        if self.L22 is None:
            return self._head_apply(self.L1inv, y, transpose=True)
        x2 = lsolve(self.L22, y[q1:], trans=True)
        x1 = self._head_apply(self.L1inv, y[:q1] - self._l21t_mult(x2), transpose=True)
        return np.concatenate([x1, x2], axis=0)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.backward(self.forward(b))

    def solve_joint(self, bu: np.ndarray, bb: np.ndarray):
        """Solve the bordered system for (x_u, x_beta)."""
        yu = self.forward(bu)
        yb = lsolve(self.RX, bb - self.LX.T @ yu)
        xb = lsolve(self.RX, yb, trans=True)
        xu = self.backward(yu - self.LX @ xb)
        return xu, xb

    def inverse_diag_blocks(self) -> list[np.ndarray]:
        """Diagonal k x k blocks of A^{-1} for each term: conditional covariances of u."""
        s = self.s
        first = np.einsum("mji,mjl->mil", self.L1inv, self.L1inv)
        out = [first]
        if self.L22 is None:
            return out
        m0, k0 = s.m[0], s.k[0]
        pairs = s.cross_pattern().get("pairs") if self.L21v is not None else None
        if pairs is not None:
            # scalar head on a sparse pattern: L11_j^{-2} G_j' S^{-1} G_j per level from the
            # column pairs that built S (no dense q2 x q1 product)
            Sinv = self.tail_inverse()
            cols = s.cross_pattern()["cols21"]
            quad = np.bincount(cols[pairs[0]], weights=_head_pair_terms(self, Sinv, pairs), minlength=m0)
            out[0] = first + quad[:, None, None]
        else:
            L22inv = lsolve(self.L22, np.eye(s.q2))
            # G = L22^{-1} L21 L11^{-1}: the coupling of the head into the tail of A^{-1}
            G = L22inv @ np.asarray((self.L21 @ _blockdiag(self.L1inv)).todense())
            Gb = G.reshape(s.q2, m0, k0)
            out[0] = first + np.einsum("rmi,rmj->mij", Gb, Gb)
            Sinv = L22inv.T @ L22inv
        for i in range(1, len(s.terms)):
            a = s.u_offsets[i] - s.q1
            k, m = s.k[i], s.m[i]
            blk = Sinv[a : a + k * m, a : a + k * m]
            idx = np.arange(m)
            out.append(blk.reshape(m, k, m, k)[idx, :, idx, :])
        return out


@dataclass
class DenseFactor(_Bordered):
    """The same Cholesky factor as `Factor` (it is unique) computed in one piece from the dense
    ZΛ of a small design: one Gram product and one LAPACK call per factorization, one per
    solve. Its blocks are offered under `Factor`'s names for the code that reads them (the
    quadratures)."""

    s: ReStructure
    L: np.ndarray  # lower factor of A (q, q), C-ordered
    full: np.ndarray | None = None  # lower factor of the bordered matrix when X was given
    LX: np.ndarray | None = None
    RX: np.ndarray | None = None

    @property
    def ldL2(self) -> float:
        return 2.0 * float(np.sum(np.log(np.diagonal(self.L))))

    def forward(self, b: np.ndarray) -> np.ndarray:
        return lsolve(self.L, b)

    def backward(self, y: np.ndarray) -> np.ndarray:
        return lsolve(self.L, y, trans=True)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return dpotrs(self.L.T, b, lower=0)[0]

    def solve_joint(self, bu: np.ndarray, bb: np.ndarray):
        x = dpotrs(self.full.T, np.concatenate([bu, bb]), lower=0)[0]
        return x[: self.s.q], x[self.s.q :]

    def inverse(self) -> np.ndarray:
        """A^{-1} (q, q), computed once."""
        if "_inv" not in self.__dict__:
            self._inv = cho_inverse(self.L)
        return self._inv

    def inverse_diag_blocks(self) -> list[np.ndarray]:
        return term_diag_blocks(self.inverse(), self.s)

    def row_projections(self, V) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.s
        P = V.dense @ self.inverse()  # (n, q): row i is (A^{-1} x_i)'
        rows = np.arange(s.n)[:, None]
        Ph = P[rows, s._col_index[0]]
        if len(s.terms) == 1:
            return Ph, None
        return Ph, P[rows, s.q1 + s._tail_indices.reshape(s.n, -1)]

    # the blocks of the blocked factor -------------------------------------------------------
    @property
    def L1inv(self) -> np.ndarray:
        s = self.s
        k, m = s.k[0], s.m[0]
        idx = np.arange(m)[:, None, None] * k + np.arange(k)
        return _batched_inv_lower(self.L[np.transpose(idx, (0, 2, 1)), idx])

    @property
    def L22(self) -> np.ndarray | None:
        q1 = self.s.q1
        return None if len(self.s.terms) == 1 else np.ascontiguousarray(self.L[q1:, q1:])

    @property
    def L21v(self) -> np.ndarray | None:
        s = self.s
        if len(s.terms) == 1 or s.k[0] != 1:
            return None
        pat = s.cross_pattern()
        return self.L[s.q1 + pat["rows21"], pat["cols21"]]

    @property
    def L21(self) -> sp.csr_matrix | None:
        q1 = self.s.q1
        return None if len(self.s.terms) == 1 else sp.csr_matrix(self.L[q1:, :q1])


def _dense_factorize(s: ReStructure, V, w: np.ndarray, X: np.ndarray | None) -> DenseFactor:
    M = V.dense if X is None else V.bordered(X)
    G = M.T @ (w[:, None] * M)
    q = s.q
    G.ravel()[: q * G.shape[0] : G.shape[0] + 1] += 1.0  # + I on the random-effect block
    Lf = cholesky_lower(G)
    if X is None:
        return DenseFactor(s, Lf)
    return DenseFactor(s, np.ascontiguousarray(Lf[:q, :q]), Lf, np.ascontiguousarray(Lf[q:, :q].T),
                       np.ascontiguousarray(Lf[q:, q:]))


def pattern_product(out_idx, in_idx, vals, x: np.ndarray, size: int) -> np.ndarray:
    """M x for a (size, ·) matrix M given by its nonzeros (out_idx, in_idx, vals) and x of shape
    (·,) or (·, c): one bincount (over a flat (row, column of x) index for a matrix x)."""
    if x.ndim == 1:
        return np.bincount(out_idx, weights=vals * x[in_idx], minlength=size)
    c = x.shape[1]
    if c == 0:
        return np.zeros((size, 0))
    flat = (out_idx[:, None] * c + np.arange(c)).ravel()
    return np.bincount(flat, weights=(vals[:, None] * x[in_idx]).ravel(), minlength=size * c).reshape(size, c)


def _blockdiag(B: np.ndarray) -> sp.bsr_matrix:
    m, k, _ = B.shape
    return sp.bsr_matrix((B, np.arange(m), np.arange(m + 1)), shape=(m * k, m * k))


def factorize(s: ReStructure, V, w: np.ndarray, X: np.ndarray | None = None) -> Factor:
    """Factor Λ'Z'WZΛ + I (bordered by X when given) for weights w."""
    if getattr(V, "dense", None) is not None:
        return _dense_factorize(s, V, w, X)
    t0 = s.terms[0]
    k0, m0 = t0.k, t0.nlevels
    # first term: per-level k x k blocks, summed with bincount
    B = np.zeros((m0, k0, k0))
    V0 = V[0]
    lams = _sparse_lambdas(V)
    if k0 == 1 and lams is not None:  # θ² Σ_j w x², one streaming pass
        B[:, 0, 0] = lams[0][0, 0] ** 2 * (s.z_transpose_squared() @ w)
    else:
        for a in range(k0):
            for c in range(a + 1):
                B[:, a, c] = np.bincount(t0.codes, weights=w * V0[:, a] * V0[:, c], minlength=m0)
                B[:, c, a] = B[:, a, c]
    vals = A22 = None
    if len(s.terms) > 1:
        pat = s.cross_pattern()
        V2 = np.hstack(V[1:])
        wV2 = V2 * w[:, None]  # not sqrt(w): observed-information weights can be negative
        vals = np.bincount(pat["inv21"], weights=(wV2[:, :, None] * V0[:, None, :]).ravel(),
                           minlength=pat["nnz21"])
        A22 = np.bincount(pat["idx22"], weights=(wV2[:, :, None] * V2[:, None, :]).ravel(),
                          minlength=s.q2 * s.q2).reshape(s.q2, s.q2)
    C = XtWX = None
    if X is not None:
        wX = w[:, None] * X
        C = s.zl_tmult_matrix(V, wX)
        XtWX = X.T @ wX
    return factor_blocks(s, B, vals, A22, C, XtWX)


@dataclass(frozen=True)
class FixedPairs:
    """The column pairs of a sparse L21 summed per position of S, where A21's values are fixed up
    to a θ scale (an LMM of scalar terms: A21 = θ_0 θ_t G21, the Gram values G21 θ-free).
    With d_j = L11_j^{-2}, the product of a pair in head column j is θ_0² θ_a θ_b G_a G_b d_j,
    so L21 L21' on S's lower triangle is a θ-scaled K d for one θ-free sparse K (a row per
    position that some pair touches, a column per head level), and the head's trace terms
    (`inverse_block_traces`) are K d²: one sparse product with two vectors per evaluation in
    place of gathering every pair twice (InstEval: 1.8M pairs on 142k positions)."""

    K: sp.csr_matrix  # (positions, q1): Σ G_a G_b over the pair at (a, b) in column j
    flat: np.ndarray  # the positions a q2 + b (a >= b) in S
    row_a: np.ndarray
    row_b: np.ndarray
    mult: np.ndarray  # 2 off the diagonal, 1 on it: the full symmetric sum


def fixed_pairs(s: ReStructure, g21: np.ndarray) -> FixedPairs | None:
    """`FixedPairs` of a scalar head on a sparse pattern with Gram values g21 on A21's pattern
    (None where the blocked factor does not use column pairs)."""
    if len(s.terms) == 1 or s.k[0] != 1 or not s.sparse_cross():
        return None
    pairs = s.column_pairs()
    if pairs is None:
        return None
    p1, p2, flat, _ = pairs
    cols = s.cross_pattern()["cols21"]
    K = sp.csr_matrix((g21[p1] * g21[p2], (flat, cols[p1])), shape=(s.q2 * s.q2, s.q1))
    hit = np.flatnonzero(np.diff(K.indptr))
    a, b = np.divmod(hit, s.q2)
    return FixedPairs(K[hit], hit, a, b, np.where(a == b, 1.0, 2.0))


def factor_blocks(s: ReStructure, B: np.ndarray, vals: np.ndarray | None, A22: np.ndarray | None,
                  C: np.ndarray | None = None, XtWX: np.ndarray | None = None,
                  fixed: tuple[FixedPairs, np.ndarray] | None = None) -> Factor:
    """The factor from the blocks of Λ'Z'WZΛ (without the identity): the head's per-level
    blocks B (m0, k0, k0), A21's values on the cross pattern, the dense tail block A22, and for
    the X border C = Λ'Z'WX and X'WX. The blocks are overwritten. fixed: (`FixedPairs`, the
    θ scale θ_0² θ_a θ_b of each of its positions) where A21 = θ-scaled fixed values."""
    k0 = B.shape[1]
    B[:, np.arange(k0), np.arange(k0)] += 1.0
    L1 = _batched_chol(B)
    logdet_L1 = float(np.sum(np.log(np.diagonal(L1, axis1=1, axis2=2))))
    L1inv = _batched_inv_lower(L1)
    L21 = L22 = L21p = head_pairs = L21d = None
    if len(s.terms) > 1:
        pat = s.cross_pattern()
        A22[np.diag_indices_from(A22)] += 1.0
        dense = not s.sparse_cross()
        pairs = None if (dense or fixed is not None) else s.column_pairs()
        if k0 == 1:  # L21 = A21 L11^{-T}: a column scaling
            L21p = vals * L1inv[pat["cols21"], 0, 0]
        elif pat["head_level"] is not None:  # per (tail column, head level) block: A21_rj L1_j^{-T}
            L21p = np.einsum("pa,pba->pb", vals.reshape(-1, k0), L1inv[pat["head_level"]]).ravel()
        else:
            A21 = sp.csr_matrix((vals, pat["cols21"], pat["indptr21"]), shape=(s.q2, s.q1))
            L21 = (A21 @ _blockdiag(np.transpose(L1inv, (0, 2, 1)))).tocsr()
        if dense:
            L21d = np.zeros((s.q2, s.q1))
            if L21p is not None:
                L21d[pat["rows21"], pat["cols21"]] = L21p
            else:
                L21d = L21.toarray()
            S = A22 - L21d @ L21d.T
        elif fixed is not None:
            fp, scale = fixed
            d = L1inv[:, 0, 0] ** 2
            Kd = fp.K @ np.column_stack([d, d * d])
            S = A22
            S.ravel()[fp.flat] -= scale * Kd[:, 0]  # S's lower triangle, all the Cholesky reads
            head_pairs = (fp.flat, fp.mult * scale * Kd[:, 1])
        elif pairs is not None and L21p is not None:  # half the pairs: S's lower triangle is all the Cholesky reads
            p1, p2, flat, _ = pairs
            S = A22 - np.bincount(flat, weights=L21p[p1] * L21p[p2], minlength=s.q2 * s.q2).reshape(s.q2, s.q2)
        else:
            if L21 is None:
                L21 = sp.csr_matrix((L21p, pat["cols21"], pat["indptr21"]), shape=(s.q2, s.q1))
            S = A22 - (L21 @ L21.T).toarray()
        L22 = lead_cholesky(S, s.diagonal_lead())
    f = Factor(s, L1inv, logdet_L1, L21, L22, L21p=L21p, head_pairs=head_pairs, L21d=L21d)
    if C is not None:
        f.LX = f.forward(C)
        f.RX = np.linalg.cholesky(XtWX - f.LX.T @ f.LX)
    return f


def row_projections(f: Factor, V) -> tuple[np.ndarray, np.ndarray | None]:
    """(A^{-1} x_i) on the columns row i touches, for every row x_i of ZΛ.

    Returns Ph (n, k0): the entries at row i's level of the first term, and Pt (n, width): the
    entries at its tail columns (None for a single term). Built from the selected blocks of
    A^{-1} only -- per-level head blocks L1^{-T}(I + L21_j' M L21_j)L1^{-1}, head-tail
    -M L21 L11^{-1} and tail-tail M = S^{-1} -- so the cost is O(q2² q1 + n), never O(q n).
    """
    if isinstance(f, DenseFactor):
        return f.row_projections(V)
    s = f.s
    if f.L21v is not None and s.sparse_cross():
        idx = s.projection_index()
        if idx is not None and s.column_pairs() is not None:
            return _row_projections_scalar_head(f, V, idx)
    t0 = s.terms[0]
    k0 = t0.k
    Linv = f.L1inv[t0.codes]  # (n, k0, k0)
    xh = V[0]
    if f.L22 is None:
        Y = np.einsum("nij,nj->ni", Linv, xh)
        return np.einsum("nji,nj->ni", Linv, Y), None
    M = f.tail_inverse()
    if k0 == 1 and s.sparse_cross():
        # sparse L21 (nested designs: one nonzero per column): M L21 costs q2 * nnz, not q2² q1
        ML = np.asarray((f.L21.T @ M).T)
        Q = np.asarray(f.L21.multiply(ML).sum(axis=0)).reshape(s.m[0], 1, 1)
    else:
        L21d = f.L21d if f.L21d is not None else f.L21.toarray()  # (q2, q1)
        ML = M @ L21d
        Q = np.einsum("rja,rjb->jab", L21d.reshape(s.q2, s.m[0], k0), ML.reshape(s.q2, s.m[0], k0))
    Q = Q.copy()  # per head level: L21_j' M L21_j, plus I below
    Q[:, np.arange(k0), np.arange(k0)] += 1.0
    H = np.einsum("jai,jab,jbc->jic", f.L1inv, Q, f.L1inv)  # head diagonal blocks of A^{-1}
    width = sum(s.k[1:])
    cols = s._tail_indices.reshape(s.n, width)
    xt = np.hstack(V[1:])
    head_cols = t0.codes[:, None] * k0 + np.arange(k0)[None, :]
    # head-tail block of A^{-1}: K = -M L21 L11^{-1}, gathered at (row's tail cols, row's head block)
    K = -np.einsum("nab,nbc->nac", ML[cols[:, :, None], head_cols[:, None, :]], Linv)  # (n, width, k0)
    Ph = np.einsum("nab,nb->na", H[t0.codes], xh) + np.einsum("nab,na->nb", K, xt)
    Pt = np.einsum("nab,nb->na", K, xh) + np.einsum("nab,nb->na", M[cols[:, :, None], cols[:, None, :]], xt)
    return Ph, Pt


def _row_projections_scalar_head(f: Factor, V, idx) -> tuple[np.ndarray, np.ndarray]:
    """`row_projections` for a scalar head term on a sparse pattern, from the selected entries
    of S^{-1} alone: the head's diagonal L11_j^{-2}(1 + L21_j' S^{-1} L21_j) from the column
    pairs that also build S, the head-tail entries -L11_j^{-1} S^{-1} L21_j and the tail-tail
    ones gathered from S^{-1}'s lower triangle (θ-free index arrays, `projection_index`); no
    dense q2 x q1 product and no symmetric copy of S^{-1}."""
    s = f.s
    codes, pat, pairs = s.terms[0].codes, s.cross_pattern(), s.column_pairs()
    width = pat["width"]
    Sinv = f.tail_inverse_lower()
    Sl = Sinv.ravel()
    linv = f.L1inv[:, 0, 0]
    H = linv * linv + np.bincount(pat["cols21"][pairs[0]], weights=_head_pair_terms(f, Sinv, pairs),
                                  minlength=s.m[0])
    K = np.bincount(idx["k_out"], weights=Sl[idx["k_flat"]] * f.L21v[idx["k_e"]], minlength=s.n * width)
    K = -K.reshape(s.n, width) * linv[codes][:, None]
    xh, xt = V[0][:, 0], np.hstack(V[1:])
    Ph = (H[codes] * xh + np.einsum("na,na->n", K, xt))[:, None]
    Pt = K * xh[:, None] + np.einsum("nab,nb->na", Sl[idx["tt_flat"]], xt)
    return Ph, Pt


def inverse_diagonal(f: Factor) -> np.ndarray | None:
    """diag(A^{-1}) when every term is scalar and there is a tail (None otherwise): the head's
    entries L11_j^{-2} (1 + ||L22^{-1} L21[:, j]||²) and the tail's column norms of L22^{-1}.
    One triangular inverse (a third of the work of S^{-1}) and one sparse product; no pass
    over the rows."""
    s = f.s
    if len(s.terms) == 1 or any(k != 1 for k in s.k):
        return None
    if isinstance(f, DenseFactor):
        return np.diagonal(f.inverse()).copy()
    L22inv, info = dtrtri(f.L22, lower=1)
    if info != 0:
        return None
    W = np.asarray((f.L21.T @ L22inv.T))  # (q1, q2): row j is (L22^{-1} L21[:, j])'
    head = f.L1inv[:, 0, 0] ** 2 * (1.0 + np.einsum("jr,jr->j", W, W))
    tail = np.einsum("ri,ri->i", L22inv, L22inv)
    return np.concatenate([head, tail])


def _head_pair_terms(f: Factor, Sinv: np.ndarray, pairs) -> np.ndarray:
    """Per column pair (a, b) of L21 in head column j: G_aj G_bj S^{-1}_ab (twice off the
    diagonal), G = L21 L11^{-1}; summed over a column's pairs, the quadratic form G_j' S^{-1} G_j.
    Only S^{-1}'s lower triangle is read."""
    p1, p2, flat, mult = pairs
    g = f.L21v * f.L1inv[f.s.cross_pattern()["cols21"], 0, 0]
    return mult * g[p1] * g[p2] * Sinv.ravel()[flat]


def inverse_block_traces(f: Factor) -> np.ndarray | None:
    """tr_t(A^{-1}) for each term t when every term is scalar and there is a tail (None
    otherwise). Tail terms: blocks of diag(S^{-1}). The head: Σ_j L11_j^{-2} (1 + G_j' S^{-1}
    G_j) with G_j = L21[:, j] the column's few nonzeros, so the sum over j is one dot product
    of S^{-1} gathered at the column pairs that also build S -- no product with a dense q2 x q2
    matrix and no pass over the rows."""
    s = f.s
    if len(s.terms) == 1 or any(k != 1 for k in s.k):
        return None
    fixed = f.head_pairs if isinstance(f, Factor) else None  # the pairs summed once (`FixedPairs`)
    pairs = s.column_pairs() if fixed is None and isinstance(f, Factor) and f.L21v is not None else None
    if fixed is None and pairs is None:
        diag = inverse_diagonal(f)
        return None if diag is None else np.add.reduceat(diag, s.u_offsets[:-1])
    # S^{-1}'s lower triangle (the pairs' flat indices) and diagonal are all that is read
    Sinv = f.tail_inverse_lower()
    if fixed is not None:
        flat, weight = fixed
        pair_sum = float(Sinv.ravel()[flat] @ weight)
    else:
        pair_sum = float(np.sum(_head_pair_terms(f, Sinv, pairs)))
    head = float(np.sum(f.L1inv[:, 0, 0] ** 2)) + pair_sum
    tail = np.add.reduceat(np.diagonal(Sinv), s.u_offsets[1:-1] - s.q1)
    return np.concatenate([[head], tail])


def leverages(f: Factor, V, proj=None) -> np.ndarray:
    """s_i = x_i' A^{-1} x_i for each row x_i of ZΛ (the diagonal of ZΛ A^{-1} Λ'Z')."""
    Ph, Pt = row_projections(f, V) if proj is None else proj
    out = np.einsum("ni,ni->n", V[0], Ph)
    if Pt is not None:
        out += np.einsum("ni,ni->n", np.hstack(V[1:]), Pt)
    return out
