"""Adaptive Gauss–Hermite quadrature for the random effects of one term (seed 003 §3).

The model has one random-effect term, so the integral over u factors into one d-dimensional
integral per level j of its grouping factor (d = 1 is lme4's case):

    L_j(θ, β) = ∫ exp(ℓ_j(u)) φ_d(u) du,      ℓ_j(u) = Σ_{i: g(i)=j} log p(y_i | η_i(u)).

With the conditional mode û_j from PIRLS and the per-level Cholesky block L_j of
A = Λ'Z'WZΛ + I (A_j = L_j L_j'), the change of variable u = û_j + L_j^{-T} z gives

    L_j = |L_j|^{-1} ∫ exp(g_j(z)) φ_d(z) dz,   g_j(z) = ℓ_j(u(z)) - ‖u(z)‖²/2 + ‖z‖²/2,

and the quadrature  L_j ≈ |L_j|^{-1} Σ_i w_i exp(g_j(z_i)). For d = 1 the knots are lme4's
û_j + z_i / L_jj (eq. 23); nAGQ = 1 (the single knot z = 0) is exactly the Laplace deviance.
exp(g_j(z) - g_j(0)) is seed 003's t(z): the integrand relative to its Gaussian approximation.

For d >= 2 the rule is a product Gauss–Hermite grid (k^d knots) or a Smolyak sparse grid,
see `glmmbayes.core.quadrature`. The log-likelihood is fully normalized (lme4's nAGQ > 1 logLik
leaves out Σ log dbinom(y, n, y/n); we never do).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from ..errors import SpecError
from .linalg import colwise_tril
from .nested import level_constants, nesting
from .pirls import PirlsState, Problem, pirls
from .quadrature import Rule, default_grid, make_rule

MAX_NODES = 200_000  # a product grid larger than this is refused (use grid="sparse" or a lower nAGQ)
_CHUNK = 2_000_000  # rows x knots evaluated at once
# at most this many rows x knots at once (32 MB), even for one level with very many rows: a fresh
# array of more comes from the system page by page, at ~10 µs a page here
_BLOCK = 4_000_000
_CACHE_BLOCK = 1 << 18  # rows x knots of one block of levels in the scalar gradient (2 MB arrays)


# --------------------------------------------------------------------------- checks


def check_integrable(design, what: str = "method='agq'", *, nested: bool = False) -> None:
    """AGQ needs the random effects of exactly one term (one grouping factor), or, with
    `nested`, two scalar terms one nested in the other (`glmmbayes.core.nested`)."""
    terms = design.terms
    if len(terms) == 1 or (nested and nesting(design) is not None):
        return
    if not terms:
        raise SpecError(f"{what} needs a random-effect term; this model has none")
    names = ", ".join(str(t) for t in terms)
    groups = {t.group_name for t in terms}
    hint = ""
    if len({tuple(t.group_vars) for t in terms}) == 1:
        hint = (" (the terms share one grouping factor: write them as one term, e.g. "
                f"(1 + x | {terms[0].group_name}), to integrate them jointly)")
    raise SpecError(
        f"{what} integrates the random effects of a single term with one grouping factor; this "
        f"model has {len(terms)} terms ({names}) over {len(groups)} grouping factor(s){hint}, whose "
        "integral does not factor into low-dimensional pieces"
        + (" (two scalar terms with one factor nested in the other, e.g. (1 | community/mother), "
           "are integrated by nested quadrature)" if nested else "")
        + ". Use method='laplace' (nAGQ=1) instead."
    )


def agq_rule(design, nAGQ: int, grid: str | None) -> Rule:
    """The quadrature rule for the (single) term of `design`; a product grid too large to
    evaluate is refused with the way out."""
    d = design.terms[0].k
    if (grid or default_grid(int(nAGQ), d)) == "product" and float(nAGQ) ** d > MAX_NODES:
        raise SpecError(
            f"a product grid of nAGQ={nAGQ} in {d} dimensions has {nAGQ}^{d} knots; "
            "use grid='sparse' or a smaller nAGQ"
        )
    return make_rule(int(nAGQ), d, grid)


# --------------------------------------------------------------------------- the quadrature


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The rows sorted by level of the grouping factor, so that the per-level sums over
    rows x knots are contiguous reductions (np.add.reduceat) rather than scattered ones."""

    order: np.ndarray  # row permutation
    codes: np.ndarray  # level of each sorted row
    starts: np.ndarray  # first sorted row of each level
    counts: np.ndarray  # rows per level (m,)
    y: np.ndarray
    wt: np.ndarray
    X_rows: np.ndarray  # the design's X in its own row order (sorted on first use: `X`)
    x: np.ndarray  # the term's covariate (d = 1)
    level_constant_x: bool  # the covariate is constant within each level (an intercept term)
    unit_x: bool  # the covariate is 1 everywhere
    unit_wt: bool  # every prior weight is 1
    _work: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def level_sums(self, a: np.ndarray) -> np.ndarray:
        """(..., n) over the sorted rows -> (m, ...): the sum over each level's rows (for a
        (K, n) array of knots: (m, K))."""
        return self._reduce(np.add, a)

    def level_products(self, a: np.ndarray) -> np.ndarray:
        """As `level_sums`, the product over each level's rows."""
        return self._reduce(np.multiply, a)

    def _reduce(self, ufunc, a: np.ndarray) -> np.ndarray:
        flat = ufunc.reduceat(a.reshape(-1, a.shape[-1]), self.starts, axis=1)  # (rest, m)
        return flat.T.reshape((len(self.starts),) + a.shape[:-1])

    @property
    def X(self) -> np.ndarray:
        """X's rows sorted by level (an (n, p) gather, made where a caller needs it)."""
        if "X" not in self._work:
            self._work["X"] = np.ascontiguousarray(self.X_rows[self.order])
        return self._work["X"]

    def XT_when_reused(self) -> np.ndarray | None:
        """X' with its columns sorted by level, (p, n), from the second caller on: a one-off
        (n, p) gather pays for itself over an optimizer's gradients, not for a single check."""
        calls = self._work["XT calls"] = self._work.get("XT calls", 0) + 1
        if "XT" not in self._work and calls >= 2:
            self._work["XT"] = np.ascontiguousarray(self.X_rows[self.order].T)
        return self._work.get("XT")

    def level_blocks(self, rows: int) -> list:
        """[(first row, end row, first level, end level, the block's layout)]: consecutive
        levels with about `rows` rows together (a larger level alone); one block, this layout,
        where every row fits."""
        key = ("blocks", rows)
        if key not in self._work:
            n, m = len(self.codes), len(self.starts)
            if n <= rows:
                self._work[key] = [(0, n, 0, m, self)]
            else:
                ends = np.append(self.starts[1:], n)
                cuts = [0]
                while cuts[-1] < m:  # the first level whose end passes the block's row budget
                    start = self.starts[cuts[-1]]
                    cuts.append(max(cuts[-1] + 1, int(np.searchsorted(ends, start + rows, side="right"))))
                self._work[key] = [self._block(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        return self._work[key]

    def _block(self, l0: int, l1: int):
        r0 = int(self.starts[l0])
        r1 = int(self.starts[l1]) if l1 < len(self.starts) else len(self.codes)
        rows = slice(r0, r1)
        sub = dataclasses.replace(self, order=self.order[rows], codes=self.codes[rows] - l0,
                                  starts=self.starts[l0:l1] - r0, counts=self.counts[l0:l1],
                                  y=self.y[rows], wt=self.wt[rows], x=self.x[rows])
        return r0, r1, l0, l1, sub

    def unsorted(self, a: np.ndarray) -> np.ndarray:
        """A vector over the sorted rows back in the design's row order."""
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def spread(self, a: np.ndarray) -> np.ndarray:
        """(m, K) per level -> (K, n) for the sorted rows."""
        return np.repeat(np.ascontiguousarray(a.T), self.counts, axis=1)

    def response_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k = y wt per sorted row, Σ k and Σ k x per level): the canonical families' linear
        part, fixed for the fit."""
        if "k" not in self._work:
            k = self.y * self.wt
            self._work["k"] = (k, self.level_sums(k), self.level_sums(k * self.x))
        return self._work["k"]

    def workspace(self, K: int) -> np.ndarray:
        """A (K, n) scratch array kept for the fit (the kernel's, summed as soon as it is made);
        K knots, or the knots of one block."""
        if self._work.get("K") != K:
            self._work.update(K=K, array=np.empty((K, len(self.codes))))
        return self._work["array"]


def _level_indicator(prob: Problem) -> sp.csc_matrix:
    """The (m, n) 0/1 matrix of the rows' levels: per-level sums of an (n, p) matrix in one
    product."""
    cache = prob.__dict__.setdefault("_agq_cache", {})
    if "indicator" not in cache:
        codes = prob.structure.terms[0].codes
        n = len(codes)
        cache["indicator"] = sp.csc_matrix((np.ones(n), codes, np.arange(n + 1)),
                                           shape=(prob.structure.terms[0].nlevels, n))
    return cache["indicator"]


def _weighted_level_sums(prob: Problem, w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Σ over the rows of each level of w_i X_i, (m, p): the level indicator with w as its values
    times X, so that no (n, p) product is made."""
    ind = _level_indicator(prob)
    return sp.csc_matrix((w, ind.indices, ind.indptr), shape=ind.shape, copy=False) @ X


def _layout(prob: Problem) -> _Layout:
    cache = prob.__dict__.setdefault("_agq_cache", {})
    if "layout" not in cache:
        t = prob.structure.terms[0]
        order, counts, starts = prob.structure.level_order(0)
        xs = np.ascontiguousarray(t.X[order, 0])
        cache["layout"] = _Layout(
            order=order, codes=t.codes[order], starts=starts, counts=counts,
            y=prob.y[order], wt=prob.wt[order], X_rows=prob.X,
            x=xs, level_constant_x=bool(np.all(xs == np.repeat(xs[starts], counts))),
            unit_x=bool(np.all(xs == 1.0)), unit_wt=bool(np.all(prob.wt == 1.0)),
        )
    return cache["layout"]


def _knot_geometry(prob: Problem, st: PirlsState, z: np.ndarray):
    """(layout, Vt, η̂, u at the knots) for the knots z (K, d): with the rows sorted by level,
    η_iz = η̂_i + Vt_i'z (Vt_i = L_j^{-1} V_i) and u_jz = û_j + L_j^{-T} z, (m, K, d)."""
    s = prob.structure
    t = s.terms[0]
    m, d = t.nlevels, t.k
    lay = _layout(prob)
    Linv = st.factor.L1inv  # (m, d, d): L_j^{-1}
    U = st.u[: s.q1].reshape(m, d)
    V = st.V[0][lay.order]  # (n, d): rows of ZΛ, sorted by level
    if d == 1:
        Vt = Linv[lay.codes, 0, 0][:, None] * V
    else:
        Vt = np.einsum("nij,nj->ni", Linv[lay.codes], V)
    Uz = U[:, None, :] + np.einsum("mji,kj->mki", Linv, z)
    return lay, Vt, st.eta[lay.order], Uz


def _integrand_from_sums(prob: Problem, S: np.ndarray, Uz: np.ndarray, z: np.ndarray, phi: float):
    """g_j(z) from the per-level sums S (m, K) of the log-likelihood kernel at the knots."""
    return (S + level_constants(prob, phi)[:, None] - 0.5 * np.sum(Uz * Uz, axis=2)
            + 0.5 * np.sum(z * z, axis=1)[None, :])


def log_integrand(prob: Problem, st: PirlsState, z: np.ndarray, phi: float = 1.0) -> np.ndarray:
    """g_j(z) for every level j (rows) and knot z (columns): (m, K)."""
    z = np.asarray(z, float).reshape(-1, prob.structure.terms[0].k)
    lay, Vt, eta0, Uz = _knot_geometry(prob, st, z)
    n, K = len(eta0), z.shape[0]
    fam = prob.family
    S = np.empty((prob.structure.terms[0].nlevels, K))
    step = max(1, _CHUNK // max(n, 1))
    for a in range(0, K, step):
        eta = z[a : a + step] @ Vt.T  # (knots, rows)
        eta += eta0
        S[:, a : a + step] = lay.level_sums(fam.loglik_kernel(lay.y, eta, lay.wt, phi))
    return _integrand_from_sums(prob, S, Uz, z, phi)


def log_det_blocks(st: PirlsState) -> np.ndarray:
    """log |L_j| for each level (L_j the Cholesky factor of the level's block of A)."""
    return -np.sum(np.log(np.diagonal(st.factor.L1inv, axis1=1, axis2=2)), axis=1)


def signed_logsumexp(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    gmax = np.max(g, axis=1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        tot = np.sum(w[None, :] * np.exp(g - gmax), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(tot) + gmax[:, 0]
    return np.where(tot > 0, out, -np.inf)  # a sparse grid's sum can go negative on a bad integrand


def group_log_integrals(prob: Problem, st: PirlsState, rule: Rule, phi: float = 1.0) -> np.ndarray:
    """log L_j for every level of the (single) grouping factor, by adaptive quadrature with `rule`."""
    g = log_integrand(prob, st, rule.z, phi)
    return signed_logsumexp(g, rule.w) - log_det_blocks(st)


def deviance_at_state(prob: Problem, st: PirlsState, rule: Rule, phi: float = 1.0) -> float:
    """-2 log-likelihood (fully normalized) by AGQ at a PIRLS state."""
    return float(-2.0 * np.sum(group_log_integrals(prob, st, rule, phi)))


def agq_deviance(prob: Problem, theta, beta, nAGQ: int = 25, *, grid: str | None = None,
                 phi: float = 1.0, u0=None, rule: Rule | None = None) -> float:
    """-2 log-likelihood at (θ, β) by AGQ with nAGQ knots per dimension (PIRLS run here)."""
    if rule is None:
        rule = make_rule(int(nAGQ), prob.structure.terms[0].k, grid)
    st = pirls(prob, np.asarray(theta, float), np.asarray(beta, float), u0, phi=phi)
    if not np.isfinite(st.pdev):
        return np.inf
    return deviance_at_state(prob, st, rule, phi)


_EXP_SAFE = 700.0  # |η| below which exp(η) and 1 + exp(η) are finite


def _knot_loglik(prob: Problem, lay: _Layout, eta0: np.ndarray, c: np.ndarray, z: np.ndarray, phi: float):
    """(S, blocks, k) for one scalar term at the knots z, over the rows sorted by level: S (m, K)
    the sum over each level's rows of the log-likelihood kernel at every knot; blocks() yields
    (a, b, Q) for knots a..b with dℓ/dη = k - Q ((b - a, n)) at those knots and every row (k None:
    dℓ/dη = -Q). Where rows x knots exceed `_BLOCK`, the knots go in blocks and Q is computed
    again for the second pass instead of kept: no array of rows x knots is made at all.

    η_iz = η̂_i + c_i z. For an intercept term c is constant within a level, so with the canonical
    binomial and Poisson links exp(η_iz) = exp(η̂_i) exp(c_j z) costs a product instead of an
    exponential, the linear part Σ_i k_i η_iz is a per-level sum, and dℓ/dη = k - wt μ: what
    remains per row and knot is a division (binomial) or nothing (Poisson). With unit weights the
    binomial's Σ_i log(1 + e^η_iz) is the log of a per-level product.
    """
    fam = prob.family
    canon = fam.fast_canonical
    K, n = len(z), len(eta0)
    step = max(1, _BLOCK // max(n, 1))
    spans = [(a, min(K, a + step)) for a in range(0, K, step)]
    kept = []
    S = np.empty((len(lay.starts), K))
    fast = (lay.level_constant_x and canon is not None
            and float(np.max(np.abs(eta0))) + float(np.max(np.abs(c))) * float(np.max(np.abs(z)))
            < _EXP_SAFE)
    if not fast:
        def score_block(a, b):
            eta = z[a:b, None] * c[None, :]
            eta += eta0
            return fam.kernel_and_score(lay.y, eta, lay.wt, phi)

        for a, b in spans:
            ker, dl = score_block(a, b)
            S[:, a:b] = lay.level_sums(ker)
            if len(spans) == 1:
                kept.append(np.negative(dl, out=dl))

        def blocks():
            for a, b in spans:
                yield a, b, kept[0] if kept else np.negative(score_block(a, b)[1])

        return S, blocks, None
    k, ksum, _ = lay.response_sums()
    wt, unit = lay.wt, lay.unit_wt
    cj = c[lay.starts]  # c per level
    E, e0 = np.exp(np.outer(cj, z)), np.exp(eta0)
    work = lay.workspace(spans[0][1])

    def exp_eta(a, b):  # exp(η) at knots a..b and every row
        t = lay.spread(E[:, a:b])
        t *= e0
        return t

    def cumulant_sums(t, ker):  # Σ_i wt_i A(η_iz) per level and knot; t becomes μ
        if unit and canon.leaves_exp_cumulant:
            canon.mean_from_exp(t, ker)  # ker = e^A(η) >= 1
            with np.errstate(over="ignore"):
                P = lay.level_products(ker)
            if np.all(np.isfinite(P)):  # no product beyond e^709
                return np.log(P)
            np.log(ker, out=ker)
        else:
            canon.cumulant_from_exp(t, ker)  # ker = A(η) (binomial log(1 + e^η), Poisson e^η)
        if not unit:
            ker *= wt
        return lay.level_sums(ker)

    for a, b in spans:
        t = exp_eta(a, b)
        S[:, a:b] = -cumulant_sums(t, work[: b - a])
        if len(spans) == 1:
            kept.append(t if unit else np.multiply(t, wt, out=t))
    S += lay.level_sums(k * eta0)[:, None] + np.outer(cj * ksum, z)

    def blocks():
        for a, b in spans:
            if kept:
                yield a, b, kept[0]
                continue
            t = exp_eta(a, b)
            canon.mean_from_exp(t, work[: b - a])
            yield a, b, t if unit else np.multiply(t, wt, out=t)

    return S, blocks, k


def agq_gradient(prob: Problem, st: PirlsState, rule: Rule, phi: float = 1.0, warm=None):
    """(deviance, gradient in θ or None, gradient in β or None) of the AGQ deviance of one term;
    with `warm` (a scalar term), the derivatives of the mode are kept there for the next PIRLS."""
    if prob.structure.terms[0].k == 1:
        return agq_scalar_gradient(prob, st, rule, phi, warm=warm)
    return agq_vector_gradient(prob, st, rule, phi)


def agq_scalar_gradient(prob: Problem, st: PirlsState, rule: Rule, phi: float = 1.0, warm=None):
    """(deviance, gradient in θ, gradient in β) of the AGQ deviance for one scalar term.

    With knots u_jz = û_j + z/L_j (L_j² = A_j = Σ W_i V_i² + 1 at the mode) and
    log L_j = log Σ_z w_z exp g_j(z) - log L_j, each parameter p moves g_j(z) directly (through
    η = Xβ + V u, V = xθ) and through the knots: du_jz = dû_j - z dA_j / (2 L_j³), with dû_j from
    the stationarity of the mode and dA_j through the weights W(η) at the mode. Canonical links
    only (A is then the Hessian in u); otherwise (f, None, None). Every row quantity is over the
    rows sorted by level, so that each per-level sum is a contiguous reduction.
    """
    fam = prob.family
    t = prob.structure.terms[0]
    if t.k != 1 or not fam.is_canonical or not st.converged:
        return deviance_at_state(prob, st, rule, phi), None, None
    m = t.nlevels
    lay = _layout(prob)
    z, lw = rule.z[:, 0], np.log(np.maximum(rule.w, 1e-300))
    Lj = 1.0 / st.factor.L1inv[:, 0, 0]
    Aj = Lj * Lj
    theta = float(st.V.lambdas[0][0, 0])  # V = x θ
    x = lay.x
    V = x * theta
    uhat = st.u[:m]
    uz = uhat[:, None] + z[None, :] / Lj[:, None]  # (m, K)
    eta0 = st.eta[lay.order]
    c = np.repeat(theta / Lj, lay.counts) * x
    const = level_constants(prob, phi)
    K = len(z)
    logL, pi, Gx = np.empty(m), np.empty((m, K)), np.empty((m, K))
    r = np.empty(len(x))  # Σ_z π dℓ/dη per row
    # Σ_z π_jz dg_j(z) splits into row sums and knot sums per group, so no (K, n) array is
    # built per parameter:  Σ_i df_i r_i + Σ_jz π_jz u_jz dθ Gx_jz + a_j dû_j - b_j dA_j / (2 L_j³).
    # Levels are independent: a block of them at a time, its rows x knots in cache
    for r0, r1, l0, l1, sub in lay.level_blocks(max(1, _CACHE_BLOCK // K)):
        lv = slice(l0, l1)
        S, blocks, k = _knot_loglik(prob, sub, eta0[r0:r1], c[r0:r1], z, phi)
        g = S + const[lv, None] - 0.5 * uz[lv] * uz[lv] + 0.5 * z[None, :] ** 2
        h = g + lw[None, :]
        hmax = h.max(axis=1, keepdims=True)
        e = np.exp(h - hmax)
        tot = e.sum(axis=1)
        logL[lv] = np.log(tot) + hmax[:, 0] - np.log(Lj[lv])
        pb = pi[lv]
        np.divide(e, tot[:, None], out=pb)
        piQ = 0.0
        for z0, z1, Q in blocks():
            # Σ_i x_i Q_iz per level (an intercept term's x is 1: no pass), then Σ_z π Q per row
            Gx[lv, z0:z1] = -sub.level_sums(Q if lay.unit_x else Q * sub.x)
            Q *= sub.spread(pb[:, z0:z1])
            piQ = piQ + Q.sum(axis=0)
        r[r0:r1] = -piQ if k is None else k - piQ
        if k is not None:
            Gx[lv] += sub.response_sums()[2][:, None]
    dev = float(-2.0 * np.sum(logL))
    G = theta * Gx - uz  # ∂g/∂u at each knot
    a = np.sum(pi * G, axis=1)
    b = np.sum(pi * G * z[None, :], axis=1)
    # quantities at the mode (canonical: observed = expected information)
    dl0, W0, dW0 = fam.information_terms(lay.y, eta0, lay.wt, phi, mu=st.mu[lay.order])
    WV = W0 * V

    def dlogL_rest(du_hat, dA):
        return a * du_hat - b * dA / (2.0 * Lj**3) - dA / (2.0 * Aj)

    # β: df = X, dV = 0; all p columns at once
    cV2 = dW0 * V * V
    XT = lay.XT_when_reused()
    if XT is not None:
        du_beta = -lay.level_sums(XT * WV) / Aj[:, None]  # (m, p)
        dA_X = lay.level_sums(XT * cV2)
        Xr = XT @ r
    else:  # a single call: the rows back in the design's order instead of a sorted X
        X = prob.X
        du_beta = -_weighted_level_sums(prob, lay.unsorted(WV), X) / Aj[:, None]
        dA_X = _weighted_level_sums(prob, lay.unsorted(cV2), X)
        Xr = X.T @ lay.unsorted(r)
    # dA_j = Σ_i c_i dη_i with c = W' V² and dη = X + V du_beta[j]: the du part is per level
    dA = dA_X + lay.level_sums(cV2 * V)[:, None] * du_beta
    g_beta = -2.0 * (Xr + a @ du_beta - (b / (2.0 * Lj**3) + 1.0 / (2.0 * Aj)) @ dA)
    # θ: df = 0, dV = x
    du_hat = (-lay.level_sums(WV * x) * uhat + lay.level_sums(dl0 * x)) / Aj
    deta0 = x * np.repeat(uhat, lay.counts) + V * np.repeat(du_hat, lay.counts)
    dA = lay.level_sums(dW0 * deta0 * V * V + 2.0 * WV * x)
    g_theta = np.array([-2.0 * (float(np.sum(pi * uz * Gx)) + np.sum(dlogL_rest(du_hat, dA)))])
    if warm is not None:
        warm.record_slopes(st, du_hat[:, None], du_beta=du_beta)
    return dev, g_theta, g_beta


def agq_vector_gradient(prob: Problem, st: PirlsState, rule: Rule, phi: float = 1.0):
    """(deviance, gradient in θ, gradient in β) of the AGQ deviance for one vector term (d >= 2).

    The scalar case generalized: knots u_jz = û_j + L_j^{-T} z with A_j = L_j L_j' at the mode, so
    d log L_j = Σ_z π_jz [∂g_j/∂p + G_jz'(dû_j + d(L_j^{-T}) z)] - ½ tr(A_j^{-1} dA_j), where
    G_jz = ∂g/∂u = Λ' Σ_i ℓ'_iz x_i - u_jz. The knot sums reduce to a_j = Σ_z π G (d) and
    B_j = Σ_z π z G' (d x d): the term in the knots is tr(d(L^{-T}) B_j), with
    dL = L Φ(L^{-1} dA L^{-T}) (Φ: lower triangle, half diagonal). dû_j and dA_j come from the
    stationarity of the mode and the weights there, as for Laplace. Canonical links only.
    """
    fam = prob.family
    s = prob.structure
    t = s.terms[0]
    d, m = t.k, t.nlevels
    if not fam.is_canonical or not st.converged or rule.has_negative_weights:
        return deviance_at_state(prob, st, rule, phi), None, None
    z = np.asarray(rule.z, float).reshape(-1, d)
    K = len(z)
    lw = np.log(np.maximum(rule.w, 1e-300))
    lay, Vt, eta0, Uz = _knot_geometry(prob, st, z)
    Linv = st.factor.L1inv  # (m, d, d)
    U = st.u[: s.q1].reshape(m, d)
    xs = np.ascontiguousarray(t.X[lay.order])  # (n, d) term covariates, sorted rows
    Vs = st.V[0][lay.order]  # rows of ZΛ = x_i'Λ
    Lam = st.V.lambdas[0]
    n = len(eta0)
    step = max(1, _CHUNK // max(n, 1))
    chunks = [(a, min(K, a + step)) for a in range(0, K, step)]

    def knots(a, b):
        eta = z[a:b] @ Vt.T
        eta += eta0
        return fam.kernel_and_score(lay.y, eta, lay.wt, phi)

    S = np.empty((m, K))
    kept = None
    for a, b in chunks:
        ker, dl = knots(a, b)
        S[:, a:b] = lay.level_sums(ker)
        if len(chunks) == 1:
            kept = dl
    h = _integrand_from_sums(prob, S, Uz, z, phi) + lw[None, :]
    hmax = h.max(axis=1, keepdims=True)
    e = np.exp(h - hmax)
    tot = e.sum(axis=1)
    dev = float(-2.0 * np.sum(np.log(tot) + hmax[:, 0] - log_det_blocks(st)))
    if not np.isfinite(dev):
        return dev, None, None
    pi = e / tot[:, None]
    r = np.zeros(n)  # Σ_z π ℓ'_iz per sorted row
    Gx = np.empty((m, K, d))  # Σ_i ℓ'_iz x_i per level and knot
    for a, b in chunks:
        dl = kept if kept is not None else knots(a, b)[1]
        r += np.einsum("kn,kn->n", lay.spread(pi[:, a:b]), dl)
        for c in range(d):
            Gx[:, a:b, c] = lay.level_sums(dl * xs[:, c])
    G = np.einsum("rc,mkr->mkc", Lam, Gx) - Uz
    avec = np.einsum("mk,mkc->mc", pi, G)
    B = np.einsum("mk,kb,mka->mba", pi, z, G)
    # at the mode
    Ls = np.linalg.inv(Linv)  # L_j
    Ainv = np.einsum("mji,mjl->mil", Linv, Linv)
    etam = st.eta[lay.order]
    W0 = st.weights[lay.order]
    dW0 = fam.dweights(etam, lay.wt, phi)
    s0 = fam.score(lay.y, etam, lay.wt, phi)
    Xs = lay.X
    p = Xs.shape[1]
    VV = Vs[:, :, None] * Vs[:, None, :]  # (n, d, d)

    def level_term(du, dA):
        """Σ_j a_j'dû_j + tr(d(L^{-T}) B_j) - ½ tr(A^{-1} dA) for dû (m, d), dA (m, d, d)."""
        Xm = np.einsum("mij,mjk,mlk->mil", Linv, dA, Linv)  # L^{-1} dA L^{-T}
        Phi = np.tril(Xm)
        Phi[:, np.arange(d), np.arange(d)] *= 0.5
        dL = Ls @ Phi
        M = -np.einsum("mji,mkj,mlk->mil", Linv, dL, Linv)  # -L^{-T} dL' L^{-T}
        return float(np.sum(avec * du) + np.einsum("mab,mba->", M, B)
                     - 0.5 * np.einsum("mab,mba->", Ainv, dA))

    g_beta = Xs.T @ r
    WVX = lay.level_sums((W0[:, None, None] * Vs[:, :, None] * Xs[:, None, :]).transpose(1, 2, 0))
    for k in range(p):
        du = -np.einsum("mab,mb->ma", Ainv, WVX[:, :, k])
        deta = Xs[:, k] + np.einsum("nc,nc->n", Vs, du[lay.codes])
        dA = lay.level_sums(((dW0 * deta)[:, None, None] * VV).transpose(1, 2, 0))
        g_beta[k] += level_term(du, dA)
    g_beta *= -2.0
    rows, cols = colwise_tril(d)
    g_theta = np.empty(len(rows))
    Ucodes = U[lay.codes]
    for l, (ri, ci) in enumerate(zip(rows, cols)):
        xr = xs[:, ri]
        direct = float(np.einsum("mk,mk,mk->", pi, Uz[:, :, ci], Gx[:, :, ri]))
        hdir = xr * Ucodes[:, ci]  # dV_i'û
        rhs = -lay.level_sums(((W0 * hdir)[:, None] * Vs).T)
        rhs[:, ci] += np.bincount(lay.codes, weights=s0 * xr, minlength=m)
        du = np.einsum("mab,mb->ma", Ainv, rhs)
        deta = hdir + np.einsum("nc,nc->n", Vs, du[lay.codes])
        dA = lay.level_sums(((dW0 * deta)[:, None, None] * VV).transpose(1, 2, 0))
        R = np.zeros((m, d, d))
        R[:, ci, :] = lay.level_sums(((W0 * xr)[:, None] * Vs).T)
        dA += R + np.transpose(R, (0, 2, 1))
        g_theta[l] = -2.0 * (direct + level_term(du, dA))
    return dev, g_theta, g_beta


class AGQObjective:
    """The stage-2 objective for `fit_ml`: PIRLS for û at (θ, β), then the AGQ sum per group."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.evaluations = 0
        self.integrand_evaluations = 0  # rows x knots

    def __call__(self, prob, theta, beta, warm, phi):
        st = warm.solve(prob, theta, beta, phi=phi)
        self.evaluations += 1
        if not np.isfinite(st.pdev):
            return np.inf
        self.integrand_evaluations += len(prob.y) * self.rule.size
        dev = deviance_at_state(prob, st, self.rule, phi)
        return dev if np.isfinite(dev) else np.inf

    def value_and_grad(self, prob, theta, beta, warm, phi):
        st = warm.solve(prob, theta, beta, phi=phi)
        self.evaluations += 1
        if not np.isfinite(st.pdev):
            return np.inf, None, None
        self.integrand_evaluations += len(prob.y) * self.rule.size
        if self.rule.has_negative_weights:
            dev, gt, gb = deviance_at_state(prob, st, self.rule, phi), None, None
        else:
            dev, gt, gb = agq_gradient(prob, st, self.rule, phi, warm=warm)
        return (dev, gt, gb) if np.isfinite(dev) else (np.inf, None, None)
