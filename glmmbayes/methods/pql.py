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
  residual scale goes into ``fit.phi`` = σ² (``fit.sigma`` = σ; also ``optinfo["sigma"]``).
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
The iteration count and whether the η criterion was met are ``optinfo["iterations"]`` and
``fit.converged``; ``optinfo["working_response"]``/``["working_weights"]`` hold the z and W of
the final LMM fit, ``optinfo["eta_change"]`` the relative change Σ(Δη)²/Ση² at each iteration.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..core import objective as ob
from ..core.glm import glm_irls
from ..core.optimize import minimize_deviance
from ..design import Design
from ..errors import SpecError
from ..fit import Fit
from .checks import convergence_messages

_LOG_2PI = math.log(2.0 * math.pi)

DISPERSIONS = ("estimated", "fixed")


def lmm_deviance_fixed_sigma(sol: ob.LmmSolution, w: np.ndarray) -> float:
    """-2 log-likelihood of the weighted LMM at θ with the residual variance fixed at 1.

    z ~ N(Xβ, ZΛΛ'Z' + W⁻¹) with β at its GLS value (which is the same β as with σ² profiled):
        log|L|² + pwrss + n log(2π) − Σ log W,   L L' = Λ'Z'WZΛ + I.
    """
    return sol.factor.ldL2 + sol.pwrss + len(w) * _LOG_2PI - float(np.sum(np.log(w)))


def working_lmm(design: Design, eta: np.ndarray):
    """The working response z and weights W at η (the inputs of one PQL step)."""
    fam = design.family
    w, mu, dmu = fam.working_weights(eta, design.wt, 1.0)
    z = eta - design.offset + (design.y - mu) / dmu
    return z, w


def _fit_working_lmm(design: Design, z, w, theta0, estimated: bool):
    prob = design.problem(y=z, wt=w)
    s = design.structure

    if estimated:
        def f(theta):
            return ob.lmm(prob, theta, reml=False).deviance
    else:
        def f(theta):
            return lmm_deviance_fixed_sigma(ob.lmm(prob, theta, reml=False), w)

    opt = minimize_theta(f, theta0, s.theta_lower, s.theta_start() > 0)
    sol = ob.lmm(prob, opt.x, reml=False)
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


def fit(
    design: Design,
    *,
    dispersion: str = "estimated",
    niter: int = 10,
    tol: float = 1e-6,
    hessian: bool = False,
) -> Fit:
    """PQL fit of `design`; see the module docstring.

    dispersion: "estimated" (glmmPQL, default) or "fixed" (σ² = 1, Breslow–Clayton).
    niter: the most working-LMM fits (glmmPQL's default 10).
    tol: convergence when Σ(η − η_old)² < tol · Ση² (glmmPQL: 1e-6).
    hessian: also compute the finite-difference Hessian of the final LMM deviance in θ (for the
        convergence checks of the last θ optimization); off by default, as it costs time.
    """
    if dispersion not in DISPERSIONS:
        raise SpecError(f"dispersion must be one of {DISPERSIONS}, got {dispersion!r}")
    if not isinstance(niter, (int, np.integer)) or niter < 1:
        raise SpecError(f"niter must be a positive integer, got {niter!r}")
    if not (tol > 0):
        raise SpecError(f"tol must be positive, got {tol!r}")
    t0 = time.perf_counter()
    estimated = dispersion == "estimated"
    fam = design.family
    s = design.structure
    beta0, _ = glm_irls(design.X, design.y, design.wt, design.offset, fam)
    eta = design.X @ beta0 + design.offset
    theta = s.theta_start()
    converged = False
    changes = []
    nfev = 0
    it = 0
    for it in range(1, niter + 1):
        z, w = working_lmm(design, eta)
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
        theta_hat = theta.copy()
        u = sol.u.copy()
    else:
        theta_hat = sigma * theta
        u = sol.u / sigma
    vcov = sigma2 * sol.factor.rx_inverse()
    condvar = tuple(sol.factor.inverse_diag_blocks())

    msgs = []
    final_opt = opt
    if hessian:
        prob = design.problem(y=z, wt=w)
        if estimated:
            f = lambda th: ob.lmm(prob, th, reml=False).deviance  # noqa: E731
        else:
            f = lambda th: lmm_deviance_fixed_sigma(ob.lmm(prob, th, reml=False), w)  # noqa: E731
        final_opt = minimize_theta(f, theta, s.theta_lower, s.theta_start() > 0, hessian=True)
    cm, ok = convergence_messages(design, theta, final_opt, 0, n_main=len(theta))
    msgs += cm
    if not converged:
        msgs.append(
            f"PQL did not converge in {niter} iterations: last relative change in eta "
            f"{changes[-1]:.3g} (tol = {tol:g})"
        )
    return Fit(
        design=design,
        method="pql",
        beta_hat=sol.beta.copy(),
        vcov_beta=vcov,
        theta_hat=theta_hat,
        phi=sigma2,
        u=u,
        u_condvar=condvar,
        loglik=None,
        converged=bool(converged and ok),
        messages=tuple(msgs),
        seconds=time.perf_counter() - t0,
        nAGQ=None,
        estimate_kind="pql",
        optinfo={
            "dispersion": dispersion,
            "sigma": sigma,
            "sigma2": sigma2,
            "theta_relative": theta.copy(),
            "iterations": it,
            "niter": niter,
            "tol": tol,
            "pql_converged": converged,
            "eta_change": tuple(changes),
            "lmm_deviance": (sol.deviance if estimated else lmm_deviance_fixed_sigma(sol, w)),
            "working_response": z,
            "working_weights": w,
            "nfev": nfev,
            "gradient": final_opt.grad,
            "hessian": final_opt.hessian,
            "start": "glm",
        },
        raw=sol,
    )
