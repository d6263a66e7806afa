"""method="pql": penalized quasi-likelihood (Breslow & Clayton 1993) as the iterated
working-response weighted linear mixed model, the algorithm of `MASS::glmmPQL`.

At the current linear predictor η (started from the GLM fit without random effects, as glmmPQL)
form the working response and weights

    z = η − offset + (y − μ)/μ'(η),        W = wt · μ'(η)² / V(μ)   (`family.working_weights`),

fit the weighted LMM  z = Xβ + ZΛu + ε,  ε ~ N(0, σ² W⁻¹)  by maximum likelihood with the same
random-effect structure (the core's profiled LMM, `core.objective.lmm`; prior weights W enter as
lme's `varFixed(~1/W)` does in glmmPQL), set η = Xβ + ZΛu + offset and repeat until
Σ(η − η_old)² < tol · Ση² (glmmPQL's rule, tol = 1e-6) or `niter` LMM fits have been done.

Dispersion
----------
- ``dispersion="estimated"`` (default) reproduces MASS::glmmPQL: lme(method = "ML") with a
  residual scale σ² estimated (profiled) at every iteration. Random-effect covariances are
  reported as lme prints them, σ² Λ_rel Λ_rel' (so ``fit.theta_hat`` = σ·θ_rel is the Cholesky
  factor of the *absolute* random-effect covariance, the GLMM convention of this package), and the
  residual scale goes into ``fit.phi`` = σ² (``fit.sigma`` = σ; also ``fit.details.sigma``).
  For a family with a dispersion parameter (Gamma, non-identity gaussian) σ² is its estimate and
  ``fit.varcorr`` shows it as the Residual row; for binomial/Poisson it is the quasi-likelihood
  over/under-dispersion factor that glmmPQL prints as "Residual" (not shown by ``fit.varcorr``,
  which follows lme4 and has no Residual row for those families).
- ``dispersion="fixed"`` fixes σ² = 1 (Breslow–Clayton's original PQL): the LMM deviance at θ
  is log|L|² + pwrss + n log(2π) − Σ log W, and ``fit.phi`` = 1.

Fixed-effect standard errors are lme's: σ² (R_X R_X')⁻¹ of the final working LMM (σ² = 1 for
fixed dispersion). Conditional modes ``fit.u`` are spherical on the reported θ (b = Λ(θ̂) u) with
conditional covariances the diagonal blocks of A⁻¹ = (Λ'Z'WZΛ + I)⁻¹ of the final working LMM.

PQL has no likelihood: ``fit.loglik`` is None, so AIC/BIC are None, and the summary says so.
Unlike glmmPQL this works for crossed as well as nested random effects (the LMM is the core's).
The iteration count and whether the η criterion was met are ``fit.details.iterations`` and
``fit.converged``; ``fit.details.working_response`` / ``.working_weights`` hold the z and W of
the final LMM fit, ``fit.details.eta_change`` the relative change Σ(Δη)²/Ση² at each iteration
(`PQLInfo`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ..core import objective as ob
from ..core.glm import glm_irls
from ..core.optimize import minimize_deviance
from ..design import Design
from ..errors import FitError, SpecError
from ..estimate import Estimate, OptimizerReport, StageReport
from .ml import overflow_hint
from .options import Option, boolean, choice, integer, number

_LOG_2PI = math.log(2.0 * math.pi)

DISPERSIONS = ("estimated", "fixed")


@dataclass(frozen=True)
class PQLInfo:
    """The PQL iteration: dispersion rule, σ, θ relative to σ, iterations and η changes, the
    working response and weights of the final LMM, and its deviance."""

    dispersion: str
    sigma: float
    sigma2: float
    theta_relative: np.ndarray
    iterations: int
    niter: int
    tol: float
    pql_converged: bool
    eta_change: tuple
    lmm_deviance: float
    working_response: np.ndarray = field(repr=False)
    working_weights: np.ndarray = field(repr=False)
    nfev: int = 0
    start: str = "glm"


def lmm_deviance_fixed_sigma(sol: ob.LmmSolution, w: np.ndarray) -> float:
    """-2 log-likelihood of the weighted LMM at θ with the residual variance fixed at 1
    (`core.objective.fixed_sigma_deviance`)."""
    return ob.fixed_sigma_deviance(sol, w)


def working_lmm(design: Design, eta: np.ndarray, phi: float = 1.0):
    """The working response z and weights W at η (the inputs of one PQL step); `phi` is the
    family's dispersion where it enters the variance function (NB: μ + μ²/θ)."""
    fam = design.family
    with np.errstate(all="ignore"):
        w, mu, dmu = fam.working_weights(eta, design.wt, phi)
        z = eta - design.offset + (design.y - mu) / dmu
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(w))):
        raise FitError(f"PQL: the working response is not finite. {overflow_hint(design, eta)}")
    return z, w


def variance_dispersion(design: Design, eta: np.ndarray, start: float) -> float:
    """The NB dispersion (θ or φ) by maximum likelihood at the current linear predictor, as
    glm.nb alternates: the quasi-likelihood needs it inside the variance function. (For
    gaussian and Gamma the dispersion only scales the variance and is the working model's σ².)"""
    fam = design.family

    def nll(logphi):
        ll = np.sum(fam.loglik(design.y, eta, design.wt, float(np.exp(logphi))))
        return -ll if np.isfinite(ll) else np.inf

    c = float(np.log(start))
    r = optimize.minimize_scalar(nll, bounds=(c - 12.0, c + 12.0), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(r.x))


def _fit_working_lmm(design: Design, z, w, theta0, estimated: bool):
    prob = design.problem(y=z, wt=w, offset=np.zeros(design.n))  # z excludes the offset
    s = design.structure
    reml = design.spec.reml
    opt = minimize_theta(_working_deviance(prob, w, estimated, reml), theta0, s.theta_lower, s.theta_start() > 0)
    try:
        sol = ob.lmm(prob, opt.x, reml=reml)
    except np.linalg.LinAlgError:
        raise FitError(f"PQL: the working linear mixed model could not be factored. "
                       f"{overflow_hint(design, z)}") from None
    return opt, sol


_PROBES = (1e-2, 0.1, 0.3, 1.0, 3.0)


def minimize_theta(f, theta0, lower, diag, *, hessian: bool = False, restarts: int = 3):
    """`minimize_deviance` over θ, guarded against the spurious stop at θ_jj = 0.

    The deviance is invariant to flipping the sign of a column of Λ, so every boundary point
    θ_jj = 0 is a stationary point and a gradient method that lands there (one long first step
    from lme4's start θ = 1 is enough: cbpp's first PQL step) stops, even where the deviance
    decreases into the interior. At a boundary solution we probe the interior along each zero
    diagonal and restart from the best probe when it is lower; a genuine boundary optimum
    is kept.
    """
    opt = minimize_deviance(f, theta0, lower, hessian=hessian)
    for _ in range(restarts):
        at_bound = np.flatnonzero(diag & (opt.x - lower < 1e-4))
        if at_bound.size == 0:
            break
        best_x, best_f = None, opt.fun
        for j in at_bound:
            for v in _PROBES:
                x = opt.x.copy()
                x[j] = v
                fx = f(x)
                if np.isfinite(fx) and fx < best_f - 1e-10 * abs(best_f):
                    best_x, best_f = x, fx
        if best_x is None:
            break
        new = minimize_deviance(f, best_x, lower, hessian=hessian)
        if new.fun < opt.fun:
            opt = new
        else:
            break
    return opt


def run(design: Design, *, dispersion: str = "estimated", niter: int = 10, tol: float = 1e-6,
        hessian: bool = False) -> Estimate:
    """PQL fit of `design`; see the module docstring.

    dispersion: "estimated" (glmmPQL, default) or "fixed" (σ² = 1, Breslow–Clayton).
    niter: the most working-LMM fits (glmmPQL's default 10).
    tol: convergence when Σ(η − η_old)² < tol · Ση² (glmmPQL: 1e-6).
    hessian: also compute the finite-difference Hessian of the final LMM deviance in θ (for the
        convergence checks of the last θ optimization); off by default, as it costs time.
    """
    if design.spec.known_dispersion is not None:
        raise SpecError("PQL estimates the dispersion of its working model (dispersion='estimated') "
                        "or fixes it at 1 (dispersion='fixed'): a known Spec(known_dispersion=...) is not used here")
    estimated = dispersion == "estimated"
    fam = design.family
    s = design.structure
    beta0, phi0 = glm_irls(design.X, design.y, design.wt, design.offset, fam)
    nb_phi = phi0 if (fam.dispersion is not None and not fam.dispersion.residual_row) else None
    eta = design.X @ beta0 + design.offset
    theta = s.theta_start()
    converged = False
    changes = []
    nfev = 0
    it = 0
    for it in range(1, niter + 1):
        if nb_phi is not None:
            nb_phi = variance_dispersion(design, eta, nb_phi)
        z, w = working_lmm(design, eta, 1.0 if nb_phi is None else nb_phi)
        opt, sol = _fit_working_lmm(design, z, w, theta, estimated)
        nfev += opt.nfev
        theta = opt.x
        eta_old = eta
        eta = design.X @ sol.beta + s.zl_mult(sol.V, sol.u) + design.offset
        change = float(np.sum((eta - eta_old) ** 2) / max(np.sum(eta**2), 1e-300))
        changes.append(change)
        if change < tol:
            converged = True
            break

    sigma2 = sol.sigma2 if estimated else 1.0
    sigma = math.sqrt(sigma2)
    # report θ on the scale of the fit: absolute RE covariance for GLMMs (σ θ_rel), relative
    # to σ for the gaussian/identity LMM (whose Fit convention scales by phi)
    if fam.is_lmm or not estimated:
        theta_hat, u = theta.copy(), sol.u.copy()
    else:
        theta_hat, u = sigma * theta, sol.u / sigma
    final_opt = opt
    if hessian:
        prob = design.problem(y=z, wt=w, offset=np.zeros(design.n))  # z excludes the offset
        final_opt = minimize_theta(_working_deviance(prob, w, estimated, design.spec.reml), theta, s.theta_lower,
                                   s.theta_start() > 0, hessian=True)
    report = OptimizerReport(stages={"lmm": StageReport(nfev, it)}, gradient=final_opt.grad,
                             hessian=final_opt.hessian, n_checked=len(theta),
                             success=final_opt.success, message=final_opt.message)
    msgs = () if converged else (
        f"PQL did not converge in {niter} iterations: last relative change in eta "
        f"{changes[-1]:.3g} (tol = {tol:g})",)
    info = PQLInfo(
        dispersion=dispersion, sigma=sigma, sigma2=sigma2, theta_relative=theta.copy(),
        iterations=it, niter=niter, tol=tol, pql_converged=converged, eta_change=tuple(changes),
        lmm_deviance=sol.deviance if estimated else lmm_deviance_fixed_sigma(sol, w),
        working_response=z, working_weights=w, nfev=nfev,
    )
    return Estimate(
        method="pql", estimate_kind="pql", beta=sol.beta.copy(), vcov_beta=sigma2 * sol.factor.rx_inverse(),
        theta=theta_hat, phi=sigma2 if nb_phi is None else nb_phi, u=u,
        u_condvar=tuple(sol.factor.inverse_diag_blocks()),
        optimizer=report, method_converged=converged, messages=msgs, details=info,
    )


def _working_deviance(prob, w, estimated: bool, reml: bool = False):
    """The working LMM's deviance (or REML criterion) in θ (σ² profiled, or fixed at 1)."""
    return lambda theta: ob.lmm_deviance(prob, theta, reml, None if estimated else w)


OPTIONS = (
    Option("dispersion", "estimated", choice(*DISPERSIONS), "estimated (glmmPQL) or fixed at 1 (Breslow-Clayton)"),
    Option("niter", 10, integer(1), "the most working-LMM fits"),
    Option("tol", 1e-6, number(0.0, open_low=True), "relative change of eta that ends the iteration"),
    Option("hessian", False, boolean, "Hessian of the final working deviance (convergence checks)"),
)
