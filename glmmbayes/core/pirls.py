"""Penalized iteratively reweighted least squares (lme4's PIRLS, Fisher scoring).

Minimizes the penalized deviance  Σ d(y, μ)/φ + ||u||²  over u (β fixed: the Laplace and AGQ
objectives) or over (u, β) jointly (nAGQ=0, PQL starts, the joint mode), with step halving.
The state returned is immutable; the caller keeps it to warm-start the next evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import NUMPY
from .linalg import Factor, ReStructure, factorize


@dataclass(frozen=True)
class Problem:
    """The numeric content of a design that PIRLS needs."""

    X: np.ndarray
    y: np.ndarray
    wt: np.ndarray
    offset: np.ndarray
    family: object
    structure: ReStructure

    def loglik(self, eta: np.ndarray, phi: float = 1.0) -> float:
        """Σ log p(y_i | η_i), fully normalized; the η-free constant is computed once."""
        return float(np.sum(self.family.loglik_kernel(self.y, eta, self.wt, phi))) + self._constant(phi)

    def _constant(self, phi: float) -> float:
        cache = self.__dict__.setdefault("_const_cache", {})
        if phi not in cache:
            if len(cache) > 8:
                cache.clear()
            cache[phi] = float(np.sum(self.family.dist.constant(self.y, self.wt, phi, NUMPY)))
        return cache[phi]


@dataclass(frozen=True)
class PirlsState:
    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    weights: np.ndarray  # working weights at (u, beta)
    factor: Factor  # factor of A at (u, beta), bordered by X when beta was fitted
    pdev: float  # -2 Σ kernel(y, η) + ||u||²: Σ d/φ + ||u||² up to a constant (see penalized_deviance)
    iterations: int
    converged: bool
    V: list


def _pdev(prob: Problem, eta, u, phi) -> tuple[float, None]:
    """-2 Σ (η-dependent part of log p(y|η)) + ||u||²: the penalized deviance up to a constant."""
    k = float(np.sum(prob.family.loglik_kernel(prob.y, eta, prob.wt, phi)))
    return -2.0 * k + float(u @ u), None


def penalized_deviance(prob: Problem, eta, u, phi=1.0) -> float:
    """Σ d(y, μ)/φ + ||u||² (with the unit deviances, for reporting)."""
    mu = prob.family.linkinv(eta)
    return float(np.sum(prob.family.unit_deviance(prob.y, mu, prob.wt))) / phi + float(u @ u)


def pirls(
    prob: Problem,
    theta: np.ndarray,
    beta: np.ndarray,
    u0: np.ndarray | None = None,
    *,
    fit_beta: bool = False,
    phi: float = 1.0,
    tol: float = 1e-10,
    maxit: int = 60,
) -> PirlsState:
    """Conditional modes of u at (θ, β) (and of β too when fit_beta)."""
    s = prob.structure
    V = s.zl_values(theta)
    fam = prob.family
    u = np.zeros(s.q) if u0 is None else np.array(u0, dtype=float)
    beta = np.array(beta, dtype=float)
    fixed = prob.X @ beta + prob.offset
    eta = fixed + s.zl_mult(V, u)
    pdev, mu = _pdev(prob, eta, u, phi)
    if not np.isfinite(pdev):
        # a warm start from far away can overflow; restart at u = 0
        u = np.zeros(s.q)
        eta = fixed + s.zl_mult(V, u)
        pdev, mu = _pdev(prob, eta, u, phi)
    converged = False
    it = 0
    for it in range(1, maxit + 1):
        w, mu, dmu = fam.working_weights(eta, prob.wt, phi)
        r = (prob.y - mu) / dmu  # working residual
        factor = factorize(s, V, w, prob.X if fit_beta else None)
        bu = s.zl_tmult(V, w * r) - u
        if fit_beta:
            bb = prob.X.T @ (w * r)
            du, db = factor.solve_joint(bu, bb)
            decrement = float(bu @ du + bb @ db)
        else:
            du = factor.solve(bu)
            db = None
            decrement = float(bu @ du)
        small = decrement < tol * (1.0 + abs(pdev))
        step = 1.0
        for _ in range(30):
            u_new = u + step * du
            b_new = beta + step * db if fit_beta else beta
            fx = prob.X @ b_new + prob.offset if fit_beta else fixed
            eta_new = fx + s.zl_mult(V, u_new)
            pdev_new, mu_new = _pdev(prob, eta_new, u_new, phi)
            if np.isfinite(pdev_new) and pdev_new <= pdev + 1e-10 * abs(pdev):
                break
            step *= 0.5
        else:
            break  # no decrease possible: leave converged False
        u, beta, eta, pdev, mu = u_new, b_new, eta_new, pdev_new, mu_new
        if fit_beta:
            fixed = fx
        if small:
            # the last Newton step squares the error, so the Laplace value (which is only
            # first-order stationary in u through log|L|) is smooth enough to differentiate
            converged = True
            w, mu, dmu = fam.working_weights(eta, prob.wt, phi)
            factor = factorize(s, V, w, prob.X if fit_beta else None)
            break
    else:
        w, mu, dmu = fam.working_weights(eta, prob.wt, phi)
        factor = factorize(s, V, w, prob.X if fit_beta else None)
    return PirlsState(u, beta, eta, mu, w, factor, pdev, it, converged, V)
