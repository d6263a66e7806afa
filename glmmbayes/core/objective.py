"""Objectives on the deviance scale (-2 log-likelihood), fully normalized.

- `laplace`: -2 log p(y | ũ) + ||ũ||² + log|L|²  at the conditional mode ũ (seed 003, eq. 19).
- `nagq0`: the same value at the joint mode of (u, β) (lme4's nAGQ = 0 criterion, θ only).
- `lmm`: the profiled (RE)ML deviance of the linear mixed model (exact; β and σ profiled out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .pirls import PirlsState, Problem, pirls

_LOG_2PI = math.log(2.0 * math.pi)


def conditional_loglik(prob: Problem, eta: np.ndarray, phi: float = 1.0) -> float:
    return prob.loglik(eta, phi)


def laplace_value(prob: Problem, st: PirlsState, phi: float = 1.0) -> float:
    """-2 × Laplace log-likelihood at a PIRLS state (u-part of the factor only)."""
    return -2.0 * conditional_loglik(prob, st.eta, phi) + float(st.u @ st.u) + st.factor.ldL2


class WarmStart:
    """Remembers the last conditional modes so the next PIRLS starts close by.

    Only the optimizer loop of one fit holds one; it changes speed, never the value.
    """

    def __init__(self, q: int, beta: np.ndarray | None = None):
        self.u = np.zeros(q)
        self.beta = None if beta is None else np.array(beta, dtype=float)
        self.last: PirlsState | None = None
        self.evaluations = 0
        self.pirls_failures = 0
        self.slopes: Sensitivity | None = None  # of the remembered modes, from the last gradient
        self.at: tuple | None = None  # (θ, φ) of the last solve: where the slopes are taken
        self.key: tuple | None = None  # what the last solve was asked: (θ, fit_beta, β, φ, hessian)

    def solve(self, prob: Problem, theta, beta=None, *, fit_beta: bool = False, phi: float = 1.0,
              hessian: str = "observed") -> PirlsState:
        """PIRLS at θ from the remembered modes (β from the remembered one when fit_beta and
        none is given), and the state remembered. Where the warm start does not converge (a
        previous trial far out leaves modes PIRLS cannot come back from), PIRLS is rerun from
        u = 0 and the converged (else the lower) state is kept: the value must not depend on
        the path of the optimizer."""
        # the same point as the last solve (the optimum, asked for again by the caller once the
        # optimizer has evaluated it last): its converged state, not a second PIRLS
        key = (np.asarray(theta, float).tobytes(), fit_beta,
               None if fit_beta else np.asarray(beta, float).tobytes(), float(phi), hessian)
        if key == self.key and self.last is not None and self.last.converged:
            return self.last
        b = self.beta if beta is None else beta
        pred = None if self.slopes is None else self.slopes.predict(theta, b, phi, fit_beta)
        self.at = (np.array(theta, dtype=float), float(phi))
        st = pirls(prob, theta, b, self.u, fit_beta=fit_beta, phi=phi, hessian=hessian, predicted=pred)
        if not st.converged and np.any(self.u != 0.0):
            cold = pirls(prob, theta, b, None, fit_beta=fit_beta, phi=phi, hessian=hessian)
            if cold.converged or (np.isfinite(cold.pdev) and not cold.pdev >= st.pdev):
                st = cold
        self.update(st)
        self.key = key
        return st

    def record_slopes(self, st: PirlsState, du_theta, db_theta=None, du_beta=None, du_logphi=None,
                      db_logphi=None) -> None:
        """Keep the derivatives of the modes of `st` if it is the state remembered."""
        if self.last is st and st.converged and self.at is not None:
            theta, phi = self.at
            self.slopes = Sensitivity(theta, np.array(st.beta, dtype=float), phi, st.u, du_theta,
                                      db_theta, du_beta, du_logphi, db_logphi)

    def update(self, st: PirlsState) -> None:
        self.evaluations += 1
        self.key = None  # a state from elsewhere: no longer the answer to the last question
        self.slopes = None  # they belong to the previous modes
        if st.converged and np.all(np.isfinite(st.u)):
            self.u = st.u
            if st.beta is not None:
                self.beta = st.beta
        else:
            self.pirls_failures += 1
        self.last = st


@dataclass(frozen=True)
class Sensitivity:
    """The derivatives of the conditional modes (û, and β̂ where β is profiled) in θ, β and φ
    at one PIRLS state -- by-products of the Laplace gradient (the implicit derivative of the
    mode). The next evaluation starts PIRLS from the first-order extrapolation: one Newton
    step fewer where the optimizer moves a little (line searches, finite differences)."""

    theta: np.ndarray
    beta: np.ndarray
    phi: float
    u: np.ndarray
    du_theta: np.ndarray  # (q, nθ)
    db_theta: np.ndarray | None  # (p, nθ) where β is profiled
    du_beta: np.ndarray | None  # (q, p) where β is a parameter
    du_logphi: np.ndarray | None = None
    db_logphi: np.ndarray | None = None

    def predict(self, theta, beta, phi: float, fit_beta: bool):
        """(u, β) extrapolated to the new point, or None where the slopes do not cover the move."""
        dth = np.asarray(theta, float) - self.theta
        u = self.u + self.du_theta @ dth
        b = np.asarray(beta, float)
        if fit_beta:
            if self.db_theta is None:
                return None
            b = self.beta + self.db_theta @ dth
        elif self.du_beta is not None:
            u = u + self.du_beta @ (b - self.beta)
        elif np.any(b != self.beta):
            return None
        if phi != self.phi:
            if self.du_logphi is None:
                return None
            dl = np.log(phi / self.phi)
            u = u + self.du_logphi * dl
            if fit_beta and self.db_logphi is not None:
                b = b + self.db_logphi * dl
        return (u, b) if np.all(np.isfinite(u)) and np.all(np.isfinite(b)) else None


def laplace(prob: Problem, theta, beta, warm: WarmStart, phi: float = 1.0, hessian: str = "observed") -> float:
    st = warm.solve(prob, theta, beta, phi=phi, hessian=hessian)
    if not np.isfinite(st.pdev):
        return np.inf
    return laplace_value(prob, st, phi)


def nagq0(prob: Problem, theta, warm: WarmStart, phi: float = 1.0, hessian: str = "observed") -> float:
    st = warm.solve(prob, theta, fit_beta=True, phi=phi, hessian=hessian)
    if not np.isfinite(st.pdev):
        return np.inf
    return laplace_value(prob, st, phi)


def reml_value(prob: Problem, st: PirlsState, phi: float = 1.0) -> float:
    """-2 × the REML log-likelihood of a GLMM: the Laplace approximation over (u, β) with a flat
    prior on β, at their joint mode (a PIRLS state with β fitted): the nAGQ = 0 value plus
    log|RX|² - p log(2π) (the fixed effects integrated out like random effects, as glmmTMB's
    REML = TRUE)."""
    p = prob.X.shape[1]
    return laplace_value(prob, st, phi) + st.factor.ldRX2 - p * _LOG_2PI


def reml(prob: Problem, theta, warm: WarmStart, phi: float = 1.0, hessian: str = "observed") -> float:
    st = warm.solve(prob, theta, fit_beta=True, phi=phi, hessian=hessian)
    if not np.isfinite(st.pdev):
        return np.inf
    return reml_value(prob, st, phi)


@dataclass(frozen=True)
class LmmSolution:
    deviance: float
    beta: np.ndarray
    u: np.ndarray
    sigma2: float
    pwrss: float
    factor: object
    V: list


@dataclass(frozen=True)
class LmmSummary:
    """What an LMM fit reports at its θ: the criterion, β, the spherical modes u, σ², the
    unscaled covariance of β ((RX RX')⁻¹) and the per-term diagonal blocks of A⁻¹ (the
    conditional covariances of u), from whichever objective factored the system."""

    deviance: float
    beta: np.ndarray
    u: np.ndarray
    sigma2: float
    rx_inverse: np.ndarray
    u_condvar: tuple


def lmm_summary(prob: Problem, theta: np.ndarray, reml: bool = False) -> LmmSummary:
    """`LmmSummary` by the general path (LinAlgError where A cannot be factored)."""
    sol = lmm(prob, theta, reml)
    return LmmSummary(sol.deviance, sol.beta, sol.u, sol.sigma2, sol.factor.rx_inverse(),
                      tuple(sol.factor.inverse_diag_blocks()))


def lmm_deviance(prob: Problem, theta: np.ndarray, reml: bool = False, fixed_sigma_w=None) -> float:
    """The LMM deviance at θ for an optimizer: infinite where the system cannot be factored
    (an evaluation failure is a bad point, not a crash). With `fixed_sigma_w` (the weights) the
    residual variance is fixed at 1 (PQL's Breslow-Clayton variant)."""
    try:
        sol = lmm(prob, theta, reml)
    except np.linalg.LinAlgError:
        return np.inf
    dev = sol.deviance if fixed_sigma_w is None else fixed_sigma_deviance(sol, fixed_sigma_w, reml)
    return dev if np.isfinite(dev) else np.inf


def fixed_sigma_deviance(sol: "LmmSolution", w: np.ndarray, reml: bool = False) -> float:
    """-2 log-likelihood of the weighted LMM with the residual variance fixed at 1:
    z ~ N(Xβ, ZΛΛ'Z' + W⁻¹), β at its GLS value: log|L|² + pwrss + n log(2π) − Σ log W
    (REML: + log|RX|² − p log(2π))."""
    n_obs, sumlogw = weighted_rows(w)
    dev = sol.factor.ldL2 + sol.pwrss + n_obs * _LOG_2PI - sumlogw
    if reml:
        dev += sol.factor.ldRX2 - len(sol.beta) * _LOG_2PI
    return dev


def weighted_rows(w: np.ndarray) -> tuple[int, float]:
    """(rows with a positive weight, Σ log w over them): a row of weight 0 has infinite variance
    and carries no information, so it counts neither as an observation nor in the
    log-determinant of the residual covariance (as R's lm drops it from the residual degrees
    of freedom; lmer's logLik is -Inf there)."""
    pos = w > 0
    return int(np.count_nonzero(pos)), float(np.sum(np.log(w[pos])))


@dataclass(frozen=True)
class FixedCrossProducts:
    """The θ-free pieces of the LMM on cross-products: Xw = WX, X'WX, the response less the
    offset and its weighted least-squares fit on X (beta0, r = y - offset - X beta0; the
    penalized residual sum of squares is then a difference that keeps its digits under a large
    mean), X'Wr, r'Wr, and the rows with a positive weight with their Σ log w (`weighted_rows`)."""

    beta0: np.ndarray
    Xw: np.ndarray
    XtX: np.ndarray
    r: np.ndarray
    Xr: np.ndarray
    rr: float
    n: int
    sumlogw: float


def fixed_cross_products(prob: Problem) -> FixedCrossProducts:
    X, w = prob.X, prob.wt
    y0 = prob.y - prob.offset
    Xw = X * w[:, None]
    XtX = X.T @ Xw
    try:
        beta0 = np.linalg.solve(XtX, Xw.T @ y0) if X.shape[1] else np.zeros(0)
    except np.linalg.LinAlgError:
        beta0 = np.linalg.lstsq(X * np.sqrt(w)[:, None], y0 * np.sqrt(w), rcond=None)[0]
    r = y0 - X @ beta0
    return FixedCrossProducts(beta0, Xw, XtX, r, Xw.T @ r, float(r @ (w * r)), *weighted_rows(w))


def lmm(prob: Problem, theta: np.ndarray, reml: bool = False) -> LmmSolution:
    """Profiled deviance (ML) or REML criterion of the LMM at θ, as lme4's `devfun`."""
    s = prob.structure
    V = s.zl_values(theta)
    w = prob.wt
    from .linalg import factorize

    f = factorize(s, V, w, prob.X)
    yo = prob.y - prob.offset
    u, beta = f.solve_joint(s.zl_tmult(V, w * yo), prob.X.T @ (w * yo))
    resid = yo - prob.X @ beta - s.zl_mult(V, u)
    pwrss = float(np.sum(w * resid * resid) + u @ u)
    n, sumlogw = weighted_rows(w)
    p = prob.X.shape[1]
    dof = n - p if reml else n
    if dof <= 0 or not pwrss > 0:
        # no residual degrees of freedom, or an exact fit: σ² = 0 and no likelihood maximum
        # here; an infinite deviance keeps the optimizer away and the caller reports it
        return LmmSolution(np.inf, beta, u, 0.0, pwrss, f, V)
    with np.errstate(divide="ignore"):
        dev = f.ldL2 + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof)) - sumlogw
    if reml:
        dev += f.ldRX2
    return LmmSolution(dev, beta, u, pwrss / dof, pwrss, f, V)


def lmm_gradient(prob: Problem, sol: LmmSolution, reml: bool = False, sigma2: float | None = None) -> np.ndarray:
    """Analytic θ-gradient of the profiled LMM deviance (or REML criterion) at `sol`.

    With `sigma2` (ML only), the gradient at fixed σ² of log|A| + pwrss/σ² + n log(2πσ²) -
    Σ log w (β still at its GLS value): the deviance a profile over (θ, σ) needs.

    D = log|A| [+ log|RX|²] + dof (1 + log(2π pwrss / dof)). pwrss is minimized over (u, β),
    so d pwrss = -2 r'Z dΛ û (envelope theorem); d log|A| = 2 tr(A^{-1} Λ'Z'WZ dΛ) from the
    selected inverse blocks; for REML, log|A| + log|RX|² is the log-determinant of the bordered
    matrix M, and tr(M^{-1} dM) adds 2 Σ_i w_i (ZΛQ)_i·(ZdΛQ)_i - 2 Σ_i w_i (ZdΛQ)_i·(X RX^{-T})_i
    with Q = A^{-1}Λ'Z'WX RX^{-T}. Cost O(n (k + p)) per component after one projection pass.
    """
    from .linalg import colwise_tril, lsolve, row_projections

    s = prob.structure
    f, V, w, X = sol.factor, sol.V, prob.wt, prob.X
    n, p = weighted_rows(w)[0], X.shape[1]
    resid = prob.y - prob.offset - X @ sol.beta - s.zl_mult(V, sol.u)
    wr = w * resid
    dlogA = _dlogdet_scalar_terms(s, f, V)
    Ph, Pt = row_projections(f, V) if dlogA is None else (None, None)
    dof = n - p if reml else n
    coef = dof / sol.pwrss if sigma2 is None else 1.0 / sigma2  # d(dof log pwrss) or d(pwrss/σ²)
    if reml:
        Q = lsolve(f.RX, f.backward(f.LX).T).T  # (q, p)
        wZLQ = w[:, None] * s.zl_mult_matrix(V, Q)
        wXR = w[:, None] * lsolve(f.RX, X.T).T  # W X RX^{-T}
    g = np.empty(s.ntheta)
    tail_off = 0
    for ti, t in enumerate(s.terms):
        U = sol.u[s.u_offsets[ti] : s.u_offsets[ti + 1]].reshape(t.nlevels, t.k)
        P = None if dlogA is not None else Ph if ti == 0 else Pt[:, tail_off : tail_off + t.k]
        rows, cols = colwise_tril(t.k)  # θ order: column-wise lower triangle
        for j, (r, c) in enumerate(zip(rows, cols)):
            xr = t.X[:, r]
            val = dlogA[ti] if dlogA is not None else 2.0 * float(np.sum(w * xr * P[:, c]))  # d log|A|
            val -= 2.0 * coef * float(wr @ (xr * U[t.codes, c]))  # coef · d pwrss
            if reml:
                ZdQ = xr[:, None] * Q[s.u_offsets[ti] + t.codes * t.k + c]  # Z dΛ Q
                val += 2.0 * float(np.sum(ZdQ * (wZLQ - wXR)))
            g[s.theta_offsets[ti] + j] = val
        if ti > 0:
            tail_off += t.k
    return g


_THETA_DIAG_MIN = 1e-4  # below it q_t - tr_t(A^{-1}) cancels: the row projections instead


def _dlogdet_scalar_terms(s, f, V) -> np.ndarray | None:
    """d log|A| / dθ_t for every term when all are scalar (crossed designs, the expensive case):
    A - I = ΛZ'WZΛ with Λ = diag(θ_t), so dA/dθ_t = (D_t(A - I) + (A - I)D_t)/θ_t and
    d log|A|/dθ_t = (2/θ_t)(q_t - tr_t(A^{-1})), from the per-term traces of A^{-1} alone.
    None where a term is not scalar, there is one term, or some θ_t is near 0."""
    if len(V.lambdas) < 2 or any(L.shape != (1, 1) for L in V.lambdas):
        return None
    return dlogdet_scalar_terms(s, f, np.array([L[0, 0] for L in V.lambdas]))  # Λ_t = θ_t I


def dlogdet_scalar_terms(s, f, thetas: np.ndarray) -> np.ndarray | None:
    """d log|A| / dθ for all-scalar terms with Λ_t = θ_t I (see `_dlogdet_scalar_terms`)."""
    from .linalg import inverse_block_traces

    if np.min(np.abs(thetas)) < _THETA_DIAG_MIN:
        return None
    traces = inverse_block_traces(f)
    if traces is None:
        return None
    return 2.0 / thetas * (np.asarray(s.q_t, float) - traces)


def _phi_partials(prob: Problem, eta, phi: float, hessian: str, score, weights):
    """Per row, the φ-derivatives at fixed η of the log density, the score and the Hessian
    weights (central differences in φ: O(n), no PIRLS). Where ℓ's η-dependent part is
    divided by φ (gaussian, Gamma), the score and the weights are -1/φ times their values
    (`score`, `weights`) and only the density is differenced."""
    from .pirls import laplace_weights

    fam = prob.family
    h = 1e-5 * phi
    if fam.dist.scale_family:
        dl = (fam.loglik(prob.y, eta, prob.wt, phi + h) - fam.loglik(prob.y, eta, prob.wt, phi - h)) / (2.0 * h)
        return dl, -score / phi, -weights / phi

    def at(p):
        ll = fam.loglik(prob.y, eta, prob.wt, p)
        return ll, fam.score(prob.y, eta, prob.wt, p), laplace_weights(prob, eta, p, hessian)

    hi, lo = at(phi + h), at(phi - h)
    return tuple((a - b) / (2.0 * h) for a, b in zip(hi, lo))


def laplace_gradient(prob: Problem, st: PirlsState, phi: float = 1.0, *, theta: bool = True,
                     beta: bool = True, profiled_beta: bool = False, logphi: bool = False,
                     warm: WarmStart | None = None):
    """Analytic gradient of the Laplace deviance D = -2ℓ(y|η̂) + ||û||² + log|A| at a converged
    PIRLS state: (gradient in θ or None, gradient in β or None[, gradient in log φ]).

    With `logphi`, also dD/dlog φ: -2 Σ ∂ℓ/∂φ at fixed η (envelope), plus log|A| through
    ∂W/∂φ and through the mode, dû = A^{-1} Λ'Z' ∂s/∂φ (the per-row φ-partials by central
    differences, `_phi_partials`).

    The envelope theorem disposes of -2ℓ + ||u||² (û, and β̂ when `profiled_beta`, minimize it),
    leaving its partial derivatives; log|A| changes through Λ(θ) and through the weights,
    d log|A| = 2 tr(A^{-1} Λ'Z'W Z dΛ) + Σ_i W'(η_i) s_i dη_i, with s_i the leverages and dη
    from the implicit derivative of the mode, dû = -A^{-1}(...) (bordered by X when β is
    profiled, as in the nAGQ = 0 criterion). The implicit derivative needs A to be the Hessian
    in u: true for the observed-information Laplace (any link) and for canonical links (for
    lme4's expected-information variant with another link, see below). The selected inverse
    blocks make the cost O(n + q2² q1) per component. With `warm`, the derivatives of the mode
    it needs are also kept there (`WarmStart.record_slopes`) to start the next evaluation's
    PIRLS.

    lme4's expected-information Laplace with a non-canonical link: log|A| is that of the
    Fisher weights (the traces, leverages and W' above), but the mode moves with the Hessian in
    u, the observed information, which is factored once more for the implicit derivatives.
    """
    fam = prob.family
    if not st.converged or st.factor is None:
        return (None, None, None) if logphi else (None, None)
    from .linalg import colwise_tril, factorize, leverages, row_projections

    s = prob.structure
    X, V, eta, w = prob.X, st.V, st.eta, st.weights
    if st.hessian == "observed":
        info = st.information
        score, _, dW = fam.information_terms(prob.y, eta, prob.wt, phi, st.mu) if info is None else info
    else:
        score, dW = fam.score(prob.y, eta, prob.wt, phi), fam.dweights(eta, prob.wt, phi)
    fo, wo = st.factor, w  # the Hessian in u and its weights: what the mode's derivatives solve with
    if st.hessian == "expected" and not fam.is_canonical:
        wo = fam.observed_weights(prob.y, eta, prob.wt, phi)
        try:
            fo = factorize(s, V, wo, X if profiled_beta else None) if np.isfinite(wo).all() else None
        except np.linalg.LinAlgError:
            fo = None
        if fo is None:
            return (None, None, None) if logphi else (None, None)
    g = -2.0 * score  # -2 dℓ/dη
    proj = row_projections(st.factor, V)
    Ph, Pt = proj
    lev = leverages(st.factor, V, proj)
    wl = dW * lev

    def d_eta(h, rhs_u, rhs_b):
        """(dη, dû, dβ̂) for a perturbation with direct part h and stationarity right-hand side."""
        if profiled_beta:
            du, db = fo.solve_joint(-rhs_u, -rhs_b)
            return h + s.zl_mult(V, du) + X @ db, du, db
        du = fo.solve(-rhs_u)
        return h + s.zl_mult(V, du), du, None

    # wl' dη for dη = h + ZΛ du (+ X dβ) is wl'h + (Λ'Z'wl)' du (+ (X'wl)' dβ): no n-row product
    zwl = s.zl_tmult(V, wl)
    g_beta = du_beta = None
    if beta and not profiled_beta:
        C = s.zl_tmult_matrix(V, wo[:, None] * X)
        du_beta = -fo.solve(C)
        g_beta = X.T @ (g + wl) + du_beta.T @ zwl
    g_logphi = du_phi = db_phi = None
    if logphi:
        dl, ds, dWp = _phi_partials(prob, eta, phi, st.hessian, score, w)
        rhs_b = -(X.T @ ds) if profiled_beta else None
        deta, du_phi, db_phi = d_eta(0.0, -s.zl_tmult(V, ds), rhs_b)
        g_logphi = phi * (-2.0 * float(np.sum(dl)) + float(lev @ dWp) + float(wl @ deta))
        du_phi, db_phi = phi * du_phi, (None if db_phi is None else phi * db_phi)  # per log φ
    if not theta:
        return (None, g_beta, g_logphi) if logphi else (None, g_beta)
    # every θ_k at once: its direct part h_k = Z dΛ/dθ_k û, its trace term and the right-hand
    # side of the mode's stationarity derivative, (dΛ_k)'Z'(g/2) + Λ'Z'W h_k, as columns, so
    # that one solve and one product with ZΛ serve them all
    H = np.empty((s.n, s.ntheta))
    traces = np.empty(s.ntheta)
    R = np.zeros((s.q, s.ntheta))
    tail_off = 0
    for ti, t in enumerate(s.terms):
        U = st.u[s.u_offsets[ti] : s.u_offsets[ti + 1]].reshape(t.nlevels, t.k)
        P = Ph if ti == 0 else Pt[:, tail_off : tail_off + t.k]
        rows, cols = colwise_tril(t.k)  # θ order: column-wise lower triangle
        for j, (r, c) in enumerate(zip(rows, cols)):
            k = s.theta_offsets[ti] + j
            xr = t.X[:, r]
            H[:, k] = xr * U[t.codes, c]
            traces[k] = 2.0 * float(np.sum(w * xr * P[:, c]))
            R[s.u_offsets[ti] + c : s.u_offsets[ti + 1] : t.k, k] = np.bincount(
                t.codes, weights=xr * g * 0.5, minlength=t.nlevels)
        if ti > 0:
            tail_off += t.k
    wH = wo[:, None] * H
    R += s.zl_tmult_matrix(V, wH)
    db_theta = None
    g_theta = (g + wl) @ H + traces
    if profiled_beta:
        du_theta, db_theta = fo.solve_joint(-R, -(X.T @ wH))
        g_theta += zwl @ du_theta + (X.T @ wl) @ db_theta
    else:
        du_theta = fo.solve(-R)
        g_theta += zwl @ du_theta
    if warm is not None:
        warm.record_slopes(st, du_theta, db_theta, du_beta, du_phi if logphi else None,
                           db_phi if logphi else None)
    return (g_theta, g_beta, g_logphi) if logphi else (g_theta, g_beta)

