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

    def update(self, st: PirlsState) -> None:
        self.evaluations += 1
        if st.converged and np.all(np.isfinite(st.u)):
            self.u = st.u
            if st.beta is not None:
                self.beta = st.beta
        else:
            self.pirls_failures += 1
        self.last = st


def laplace(prob: Problem, theta, beta, warm: WarmStart, phi: float = 1.0) -> float:
    st = pirls(prob, theta, beta, warm.u, phi=phi)
    warm.update(st)
    if not st.converged and not np.isfinite(st.pdev):
        return np.inf
    return laplace_value(prob, st, phi)


def nagq0(prob: Problem, theta, warm: WarmStart, phi: float = 1.0) -> float:
    st = pirls(prob, theta, warm.beta, warm.u, fit_beta=True, phi=phi)
    warm.update(st)
    if not np.isfinite(st.pdev):
        return np.inf
    return laplace_value(prob, st, phi)


@dataclass(frozen=True)
class LmmSolution:
    deviance: float
    beta: np.ndarray
    u: np.ndarray
    sigma2: float
    pwrss: float
    factor: object
    V: list


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
    n, p = prob.X.shape
    dof = n - p if reml else n
    dev = f.ldL2 + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof)) - float(np.sum(np.log(w)))
    if reml:
        dev += f.ldRX2
    return LmmSolution(dev, beta, u, pwrss / dof, pwrss, f, V)


def laplace_beta_gradient(prob: Problem, st: PirlsState, phi: float = 1.0) -> np.ndarray | None:
    """Gradient of the Laplace deviance with respect to β at a converged PIRLS state.

    Envelope theorem for -2ℓ + ||u||² (û is its minimizer), plus d log|A| = tr(A^{-1} dA) with
    dA = Λ'Z' diag(W'(η) dη) ZΛ and dη = X dβ + ZΛ dû, dû = -A^{-1} Λ'Z'WX dβ. The implicit
    derivative uses A as the Hessian in u, which holds for canonical links (A then is the
    observed information); other links return None and the caller differentiates numerically.
    """
    fam = prob.family
    if not fam.is_canonical or not st.converged:
        return None
    from .linalg import leverages

    s = prob.structure
    X, V, eta, w = prob.X, st.V, st.eta, st.weights
    r = (prob.y - st.mu) / fam.mu_eta(eta)
    grad = X.T @ (-2.0 * w * r)
    h = 1e-5 * np.maximum(1.0, np.abs(eta))
    wp = fam.working_weights(eta + h, prob.wt, phi)[0]
    wm = fam.working_weights(eta - h, prob.wt, phi)[0]
    dW = (wp - wm) / (2.0 * h)
    lev = leverages(st.factor, V)
    C = s.zl_tmult_matrix(V, w[:, None] * X)
    du = -st.factor.solve(C)
    deta = X + np.column_stack([s.zl_mult(V, du[:, j]) for j in range(X.shape[1])])
    return grad + deta.T @ (dW * lev)
