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
    weights: np.ndarray  # Hessian weights at (u, beta): observed or expected information
    factor: Factor | None  # factor of A at (u, beta), bordered by X when beta was fitted
    pdev: float  # -2 Σ kernel(y, η) + ||u||²: Σ d/φ + ||u||² up to a constant (see penalized_deviance)
    iterations: int
    converged: bool
    V: list
    hessian: str = "observed"  # the information `weights` and `factor` are built from
    # (dℓ/dη, -d²ℓ/dη², its η-derivative) at η where the observed information of a
    # non-canonical link gave `weights`: the Laplace gradient needs the same pass
    information: tuple | None = None


def _pdev(prob: Problem, eta, u, phi) -> tuple[float, None]:
    """-2 Σ (η-dependent part of log p(y|η)) + ||u||²: the penalized deviance up to a constant."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is an infinite deviance
        k = float(np.sum(prob.family.loglik_kernel(prob.y, eta, prob.wt, phi)))
    return -2.0 * k + float(u @ u), None


def penalized_deviance(prob: Problem, eta, u, phi=1.0) -> float:
    """-2 Σ (log p(y|η) - log p(y|μ = y)) + ||u||²: the scaled deviance Σ d(y, μ)/φ + ||u||² of
    an exponential family, any family's deviance otherwise (for reporting)."""
    fam = prob.family
    with np.errstate(all="ignore"):
        sat = float(np.sum(fam.saturated_loglik(prob.y, prob.wt, phi)))
    return -2.0 * (prob.loglik(eta, phi) - sat) + float(u @ u)


def _newton_weights(prob: Problem, eta, phi):
    """(Hessian weights of the Newton step, the score dℓ/dη): the observed information -- a true
    Newton step, quadratic also for non-canonical links and non-exponential families. A row may
    have negative observed information while the penalized Hessian stays positive definite; where
    it does not, `pirls` falls back to the Fisher weights (any positive weights give a descent
    direction with the true score)."""
    fam = prob.family
    with np.errstate(all="ignore"):  # an overflowing η shows up as non-finite weights, handled by the caller
        if fam.fast_canonical is not None:
            w, mu, d = fam.working_weights(eta, prob.wt, phi)
            return w, w * (prob.y - mu) / d
        score, w, _ = fam.information_terms(prob.y, eta, prob.wt, phi)
        return w, score


def laplace_weights(prob: Problem, eta, phi, hessian: str, mu=None) -> np.ndarray:
    """The weights of the Hessian in u whose log-determinant enters the Laplace approximation:
    the observed information (the Laplace approximation proper) or the expected one (lme4).
    `mu`: linkinv(η) where the caller has it."""
    fam = prob.family
    if hessian == "observed":
        return fam.observed_weights(prob.y, eta, prob.wt, phi, mu)
    return fam.working_weights(eta, prob.wt, phi, mu)[0]


def _factor(s, V, w, X):
    """The factor, or None where it does not exist numerically (a failed evaluation is an
    infinite deviance for the optimizer, never a crash)."""
    if not np.isfinite(w).all():
        return None
    try:
        return factorize(s, V, w, X)
    except np.linalg.LinAlgError:
        return None


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
    hessian: str = "observed",
    predicted: tuple | None = None,
) -> PirlsState:
    """Conditional modes of u at (θ, β) (and of β too when fit_beta) by penalized Newton steps
    with step halving; the state's weights and factor are those of `hessian` ("observed" or
    "expected" information) at the mode. A state that could not be factored has pdev = inf.
    Overflow far from the mode (a trial θ or β way out) is such a state, not a warning.
    predicted: another start (u, β) -- the modes extrapolated from the last evaluation --
    taken where its penalized deviance is lower than that of (u0, β)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _pirls(prob, theta, beta, u0, fit_beta, phi, tol, maxit, hessian, predicted)


def _pirls(prob, theta, beta, u0, fit_beta, phi, tol, maxit, hessian, predicted=None) -> PirlsState:
    s = prob.structure
    V = s.zl_values(theta)
    X = prob.X if fit_beta else None
    u = np.zeros(s.q) if u0 is None else np.array(u0, dtype=float)
    beta = np.array(beta, dtype=float)
    fixed = prob.X @ beta + prob.offset
    eta = fixed + s.zl_mult(V, u)
    pdev, _ = _pdev(prob, eta, u, phi)
    if predicted is not None:
        pu, pb = predicted
        pfixed = prob.X @ pb + prob.offset if fit_beta else fixed
        peta = pfixed + s.zl_mult(V, pu)
        ppdev, _ = _pdev(prob, peta, pu, phi)
        if ppdev < pdev or not np.isfinite(pdev):
            u, eta, pdev, fixed = pu, peta, ppdev, pfixed
            beta = np.array(pb, dtype=float) if fit_beta else beta
    if not np.isfinite(pdev):
        # a warm start from far away can overflow; restart at u = 0
        u = np.zeros(s.q)
        eta = fixed + s.zl_mult(V, u)
        pdev, _ = _pdev(prob, eta, u, phi)
    converged = False
    it = 0
    for it in range(1, maxit + 1):
        w, score = _newton_weights(prob, eta, phi)
        factor = _factor(s, V, w, X)
        if factor is None:
            factor = _factor(s, V, prob.family.working_weights(eta, prob.wt, phi)[0], X)
            if factor is None:
                break
        bu = s.zl_tmult(V, score) - u
        if fit_beta:
            bb = prob.X.T @ score
            du, db = factor.solve_joint(bu, bb)
            decrement = float(bu @ du + bb @ db)
        else:
            du, db = factor.solve(bu), None
            decrement = float(bu @ du)
        # the Newton decrement is the deviance still to gain: measured against the number of
        # rows, not against pdev, whose size is mostly a constant (huge counts: 4e8 for 60 rows
        # of 3e7, where 1e-10 |pdev| left the modes loose enough to stall the optimizer)
        small = decrement < tol * (1.0 + len(prob.y))
        step = 1.0
        for _ in range(30):
            u_new = u + step * du
            b_new = beta + step * db if fit_beta else beta
            fx = prob.X @ b_new + prob.offset if fit_beta else fixed
            eta_new = fx + s.zl_mult(V, u_new)
            pdev_new, _ = _pdev(prob, eta_new, u_new, phi)
            if np.isfinite(pdev_new) and pdev_new <= pdev + 1e-10 * abs(pdev):
                break
            step *= 0.5
        else:
            break  # no decrease possible: leave converged False
        u, beta, eta, pdev = u_new, b_new, eta_new, pdev_new
        if fit_beta:
            fixed = fx
        if small:
            # the last Newton step squares the error, so the Laplace value (which is only
            # first-order stationary in u through log|L|) is smooth enough to differentiate
            converged = True
            break
    fam = prob.family
    mu = fam.linkinv(eta)
    info = None
    with np.errstate(all="ignore"):
        if hessian == "observed" and fam.fast_canonical is None:
            info = fam.information_terms(prob.y, eta, prob.wt, phi, mu)
            w = info[1]
        else:
            w = laplace_weights(prob, eta, phi, hessian, mu)
    factor = _factor(s, V, w, X)
    if factor is None:
        return PirlsState(u, beta, eta, mu, w, None, np.inf, it, False, V, hessian, info)
    return PirlsState(u, beta, eta, mu, w, factor, pdev, it, converged, V, hessian, info)
