"""Adaptive quadrature for two nested scalar terms: (1 | outer/inner), e.g. mothers in communities
(or two scalar terms on one factor, (x || g), where the nesting is trivial).

The integral over all random effects does not factor by level of either factor, but it nests:

    L = Π_c ∫ φ(v) Π_{m in c} [ ∫ φ(w) Π_{i in m} p(y_i | η_i(w, v)) dw ] dv.

With the joint conditional mode û and the Cholesky factor L of A = Λ'Z'WZΛ + I from PIRLS (the
inner levels first, as the blocked factor orders them), the change of variable u = û + L^{-T} z
keeps the nesting: for a nested design L21 has one entry per inner level (at its outer level)
and L22 is diagonal, so

    u_c = û_c + z_c / L22_c,      u_m = û_m + (z_m - L21_m (u_c - û_c)) / L11_m,

and  L_c = |L|_c^{-1} ∫ φ(z_c) e^{G_c(z_c)} Π_m ∫ φ(z_m) e^{G_m(z_c, z_m)} dz_m dz_c  with
G_c = -u_c²/2 + z_c²/2 and G_m = Σ_{i in m} log p(y_i | η_i) - u_m²/2 + z_m²/2. Each integral
gets a k-point Gauss-Hermite rule: k² evaluations per row (Pinheiro and Chao's 2006 multilevel
AGQ, which centres the inner rule on the Gaussian approximation given the outer knot). k = 1 is
the Laplace approximation exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .pirls import PirlsState, Problem, pirls
from .quadrature import Rule, gauss_hermite

_CHUNK = 4_000_000  # rows x knot pairs evaluated at once


def nesting(design) -> tuple[np.ndarray, str] | None:
    """(outer level of each inner level, description) when the design has exactly two scalar
    terms, the first (more levels) nested in the second; None otherwise."""
    terms = design.terms
    if len(terms) != 2 or any(t.k != 1 for t in terms):
        return None
    inner, outer = terms
    pairs = np.unique(np.stack([inner.codes, outer.codes], axis=1), axis=0)
    if len(pairs) != inner.nlevels:  # some inner level occurs in two outer levels: crossed
        return None
    outer_of = np.empty(inner.nlevels, dtype=np.int64)
    outer_of[pairs[:, 0]] = pairs[:, 1]
    if inner.nlevels == outer.nlevels:  # one factor twice, e.g. (x || g): a 2-d product rule
        return outer_of, f"{inner} and {outer} on the same levels"
    return outer_of, f"{inner.group_name} within {outer.group_name}"


def level_constants(prob: Problem, phi: float) -> np.ndarray:
    """Σ over the rows of each level of the first term of the η-free part of log p(y|η): summed
    once per fit and φ, not once per knot (shared with the single-term quadrature)."""
    cache = prob.__dict__.setdefault("_agq_cache", {})
    key = ("const", float(phi))
    if key not in cache:
        t = prob.structure.terms[0]
        c = prob.family.loglik_constant(prob.y, prob.wt, phi)
        cache[key] = np.bincount(t.codes, weights=c, minlength=t.nlevels)
    return cache[key]


def _nested_terms(prob: Problem, st: PirlsState, outer_of: np.ndarray, rule: Rule, phi: float) -> dict:
    """The quadrature at a PIRLS state: knots, per-level log integrands and log L."""
    s = prob.structure
    inner, outer = s.terms
    M, C = inner.nlevels, outer.nlevels
    z, lw = rule.z[:, 0], np.log(np.maximum(rule.w, 1e-300))
    K = len(z)
    f = st.factor
    L11 = 1.0 / f.L1inv[:, 0, 0]  # (M,)
    L22 = np.diag(f.L22).copy()  # (C,): diagonal for a nested design
    pat = s.cross_pattern()
    l21 = np.zeros(M)
    l21[pat["cols21"]] = f.L21v  # one entry per inner level (the factor keeps them for a scalar head)
    u_m, u_c = st.u[:M], st.u[M:]
    dc = z[None, :] / L22[:, None]  # (C, K): u_c - û_c at each outer knot
    # u_m - û_m at each (inner level, outer knot, inner knot): (M, K, K)
    dm = (z[None, None, :] - (l21[:, None] * dc[outer_of])[:, :, None]) / L11[:, None, None]
    order, _, starts = s.level_order(0)
    m_row, c_row = inner.codes[order], outer.codes[order]
    v_in, v_out = st.V[0][order, 0], st.V[1][order, 0]
    # η_i = η̂_i + p_i z_inner + q_i z_outer: separable in the two knots
    p = v_in / L11[m_row]
    q = (v_out - v_in * l21[m_row] / L11[m_row]) / L22[c_row]
    eta0 = st.eta[order]
    y, wt = prob.y[order], prob.wt[order]
    fam = prob.family
    S = np.empty((K, K, M))  # Σ over each inner level's rows of the kernel
    n = len(order)
    step = max(1, _CHUNK // max(n * K, 1))
    for a0 in range(0, K, step):
        a1 = min(K, a0 + step)
        eta = (z[a0:a1, None, None] * q[None, None, :] + z[None, :, None] * p[None, None, :])
        eta += eta0
        S[a0:a1] = np.add.reduceat(fam.loglik_kernel(y, eta, wt, phi), starts, axis=2)
    S = S.transpose(2, 0, 1)  # (M, K, K)
    um = u_m[:, None, None] + dm
    G_in = S + level_constants(prob, phi)[:, None, None] - 0.5 * um * um + (0.5 * z * z + lw)[None, None, :]
    I_in = logsumexp(G_in, axis=2)  # (M, K): the inner integral at each outer knot
    J = np.zeros((C, K))
    np.add.at(J, outer_of, I_in)
    uc = u_c[:, None] + dc
    G_out = J - 0.5 * uc * uc + (0.5 * z * z + lw)[None, :]
    log_det = np.log(L22) + np.bincount(outer_of, weights=np.log(L11), minlength=C)
    logL = float(np.sum(logsumexp(G_out, axis=1) - log_det))
    return dict(z=z, K=K, L11=L11, L22=L22, l21=l21, dc=dc, dm=dm, um=um, uc=uc, order=order,
                m_row=m_row, c_row=c_row, p=p, q=q, eta0=eta0, y=y, wt=wt, step=step,
                G_in=G_in, I_in=I_in, G_out=G_out, logL=logL)


def nested_log_likelihood(prob: Problem, st: PirlsState, outer_of: np.ndarray, rule: Rule,
                          phi: float = 1.0) -> float:
    """log L at a PIRLS state by nested adaptive Gauss-Hermite quadrature with `rule`."""
    return _nested_terms(prob, st, outer_of, rule, phi)["logL"]


def nested_gradient(prob: Problem, st: PirlsState, outer_of: np.ndarray, rule: Rule, phi: float = 1.0):
    """(log L, d log L / dθ, d log L / dβ) by nested AGQ; the gradients are None for a
    non-canonical link (A is then not the Hessian of the mode) or an unconverged state.

    With ω_mab = π_c(a) π_m(b|a) (the normalized outer and inner quadrature weights), every
    parameter moves η at the knots, the knots themselves (through û and L11, L21, L22, which
    depend on the weights at the mode) and log|L|; the knot sums contract once into per-row
    (R0, Rm, Rc) and per-level (Ω, Γ) arrays, so each parameter costs O(n + q), not O(n k²).
    """
    T = _nested_terms(prob, st, outer_of, rule, phi)
    fam = prob.family
    if not fam.is_canonical or not st.converged or not np.isfinite(T["logL"]):
        return T["logL"], None, None
    s = prob.structure
    inner, outer = s.terms
    M, C = inner.nlevels, outer.nlevels
    z, K, dc, dm, um, uc = T["z"], T["K"], T["dc"], T["dm"], T["um"], T["uc"]
    L11, L22, l21 = T["L11"], T["L22"], T["l21"]
    order, m_row, c_row = T["order"], T["m_row"], T["c_row"]
    pi_in = np.exp(T["G_in"] - T["I_in"][:, :, None])  # (M, K, K): π_m(b | a)
    pi_out = np.exp(T["G_out"] - logsumexp(T["G_out"], axis=1)[:, None])  # (C, K)
    omega = pi_out[outer_of][:, :, None] * pi_in  # (M, K, K)
    # second pass over rows x knot pairs: the scores contracted with ω (sorted rows)
    omT, dmT = omega.transpose(1, 2, 0), dm.transpose(1, 2, 0)  # (K, K, M)
    n = len(order)
    R0, Rm, Rc = np.zeros(n), np.zeros(n), np.zeros(n)
    for a0 in range(0, K, T["step"]):
        a1 = min(K, a0 + T["step"])
        eta = (z[a0:a1, None, None] * T["q"][None, None, :] + z[None, :, None] * T["p"][None, None, :])
        eta += T["eta0"]
        ws = fam.kernel_and_score(T["y"], eta, T["wt"], phi)[1]
        ws *= omT[a0:a1][:, :, m_row]
        R0 += ws.sum(axis=(0, 1))
        Rm += np.einsum("abn,abn->n", ws, dmT[a0:a1][:, :, m_row])
        Rc += np.einsum("an,na->n", ws.sum(axis=1), dc[c_row, a0:a1])
    R = np.empty((3, n))
    R[:, order] = np.stack([R0, Rm, Rc])  # back to the data's row order
    R0, Rm, Rc = R
    dcm = dc[outer_of][:, :, None]  # (M, K, 1): δc at each mother's outer knots
    Om0, Omc, Omm = (np.sum(omega * um * w, axis=(1, 2)) for w in (1.0, dcm, dm))
    Ga0, Gac = np.sum(pi_out * uc, axis=1), np.sum(pi_out * uc * dc, axis=1)

    X, V = prob.X, st.V
    cin, cout = inner.codes, outer.codes
    vin, vout = V[0][:, 0], V[1][:, 0]
    W = st.weights
    W1 = fam.dweights(st.eta, prob.wt, phi)
    s0 = W * (prob.y - st.mu) / fam.mu_eta(st.eta)  # dℓ/dη at the mode
    zero = np.zeros(n)

    def dlogl(rhs_u, h, dvin, dvout):
        """d log L for a perturbation: stationarity right-hand side, direct dη, dV."""
        du = st.factor.solve(rhs_u)
        deta = h + s.zl_mult(V, du)
        dW = W1 * deta
        dAmm = np.bincount(cin, weights=dW * vin * vin + 2.0 * W * vin * dvin, minlength=M)
        dAcm = np.bincount(cin, weights=dW * vin * vout + W * (dvin * vout + vin * dvout), minlength=M)
        dAcc = np.bincount(cout, weights=dW * vout * vout + 2.0 * W * vout * dvout, minlength=C)
        dL11 = dAmm / (2.0 * L11)
        lam = dL11 / L11
        dl21 = (dAcm - l21 * dL11) / L11
        kap = (dAcc - 2.0 * np.bincount(outer_of, weights=l21 * dl21, minlength=C)) / (2.0 * L22 * L22)
        rho = (-dl21 + l21 * kap[outer_of]) / L11
        rows = (deta @ R0 + dvin @ Rm + dvout @ Rc
                + float(np.sum(vin * (rho[cin] * Rc - lam[cin] * Rm))) - float(np.sum(vout * kap[cout] * Rc)))
        dum, duc = du[:M], du[M:]
        levels = float(dum @ Om0 + rho @ Omc - lam @ Omm) + float(duc @ Ga0 - kap @ Gac)
        return rows - levels - float(np.sum(kap) + np.sum(lam))

    WV = s.zl_tmult  # Λ'Z' r
    g_beta = np.array([dlogl(-WV(V, W * X[:, k]), X[:, k], zero, zero) for k in range(X.shape[1])])
    u_m, u_c = st.u[:M], st.u[M:]
    x_in, x_out = inner.X[:, 0], outer.X[:, 0]
    h_in, h_out = x_in * u_m[cin], x_out * u_c[cout]  # dV û for θ_inner, θ_outer
    r_in = -WV(V, W * h_in)
    r_in[:M] += np.bincount(cin, weights=x_in * s0, minlength=M)
    r_out = -WV(V, W * h_out)
    r_out[M:] += np.bincount(cout, weights=x_out * s0, minlength=C)
    g_theta = np.array([dlogl(r_in, h_in, x_in, zero), dlogl(r_out, h_out, zero, x_out)])
    return T["logL"], g_theta, g_beta


def nested_agq_deviance(prob: Problem, theta, beta, nAGQ: int, outer_of: np.ndarray, *,
                        phi: float = 1.0, u0=None) -> float:
    """-2 log-likelihood at (θ, β) by nested AGQ with nAGQ knots per level (PIRLS run here)."""
    st = pirls(prob, np.asarray(theta, float), np.asarray(beta, float), u0, phi=phi)
    if not np.isfinite(st.pdev):
        return np.inf
    return -2.0 * nested_log_likelihood(prob, st, outer_of, gauss_hermite(int(nAGQ)), phi)


class NestedAGQObjective:
    """The stage-2 objective for `fit_ml`, with the analytic gradient of `nested_gradient`."""

    def __init__(self, rule: Rule, outer_of: np.ndarray):
        self.rule = rule
        self.outer_of = outer_of
        self.evaluations = 0
        self.integrand_evaluations = 0

    def __call__(self, prob, theta, beta, warm, phi):
        st = warm.solve(prob, theta, beta, phi=phi)
        self.evaluations += 1
        if not np.isfinite(st.pdev):
            return np.inf
        self.integrand_evaluations += len(prob.y) * self.rule.size ** 2
        dev = -2.0 * nested_log_likelihood(prob, st, self.outer_of, self.rule, phi)
        return dev if np.isfinite(dev) else np.inf

    def value_and_grad(self, prob, theta, beta, warm, phi):
        st = warm.solve(prob, theta, beta, phi=phi)
        self.evaluations += 1
        if not np.isfinite(st.pdev):
            return np.inf, None, None
        self.integrand_evaluations += 2 * len(prob.y) * self.rule.size ** 2
        ll, gt, gb = nested_gradient(prob, st, self.outer_of, self.rule, phi)
        if not np.isfinite(ll):
            return np.inf, None, None
        return -2.0 * ll, None if gt is None else -2.0 * gt, None if gb is None else -2.0 * gb
