"""The linear mixed model (gaussian family, identity link): the profiled (RE)ML deviance over θ,
as lme4's lmer. Its likelihood is Gaussian, so Laplace and AGQ are exact: the method table runs
this for method="laplace" and "agq" alike (and labels the result with the method asked for)."""

from __future__ import annotations

import numpy as np

from ..core import objective as ob
from ..core.glm import moment_theta_start
from ..core.lmm_dense import DENSE_LMM_MAX_Q, DenseLmm
from ..core.lmm_scalar_terms import ScalarTermsLmm
from ..core.lmm_single import SingleTermLmm
from ..core.optimize import minimize_deviance
from ..design import Design
from ..errors import FitError, SpecError
from ..estimate import Estimate, OptimizerReport, StageReport


def run(design: Design, *, label: str = "laplace", nAGQ: int = 1) -> Estimate:
    if design.spec.known_dispersion is not None:
        raise SpecError("the linear mixed model estimates its residual variance: a known "
                        "dispersion is not supported here (leave Spec(known_dispersion=None))")
    reml = design.spec.reml
    s = design.structure
    prob = design.problem()

    def f(theta):
        return ob.lmm_deviance(prob, theta, reml)

    def vg(theta):
        try:
            sol = ob.lmm(prob, theta, reml)
        except np.linalg.LinAlgError:
            return np.inf, None
        return sol.deviance, ob.lmm_gradient(prob, sol, reml)

    summary = None  # the solution by the objective the optimizer used, where it has one
    # the same deviance and gradient on cross-products: no pass over the rows per evaluation
    fx = ob.fixed_cross_products(prob)
    if len(s.terms) == 1:
        one = SingleTermLmm(prob, reml, fx)
        f, vg, summary = one.deviance, one.value_and_grad, one.summary
    elif s.q <= DENSE_LMM_MAX_Q:
        small = DenseLmm(prob, reml, fx)
        f, vg, summary = small.deviance, small.value_and_grad, small.summary
    elif all(k == 1 for k in s.k):
        crossed = ScalarTermsLmm(prob, reml, fallback=vg, fx=fx)
        f, vg = crossed.deviance, crossed.value_and_grad
    unit = _theta_unit(design)
    opt = minimize_deviance(f, _theta_start(design, unit, fx), s.theta_lower, np.diag(unit),
                            hessian=True, value_and_grad=vg, restart_at_bound=True)
    theta = opt.x
    sol = _solution(design, prob, theta, reml, summary)
    report = OptimizerReport(stages={"stage1": StageReport(opt.nfev, opt.nit, opt.trace)},
                             gradient=opt.grad, hessian=opt.hessian, n_checked=len(opt.x),
                             success=opt.success, message=opt.message)
    return Estimate(
        method=label, estimate_kind="ml", beta=sol.beta, vcov_beta=sol.sigma2 * sol.rx_inverse,
        theta=theta, phi=sol.sigma2, u=sol.u, u_condvar=sol.u_condvar,
        loglik=-0.5 * sol.deviance, likelihood="reml" if reml else "exact", nAGQ=nAGQ,
        reml_criterion=sol.deviance if reml else None, optimizer=report,
    )


def _weight_scale(design: Design) -> float:
    """The mean positive prior weight: θ is relative to the residual sd of a row of weight 1,
    so weights scaled by c scale θ by 1/√c for the same fit."""
    pos = design.wt > 0
    c = float(np.mean(design.wt[pos])) if pos.any() else 1.0
    return c if np.isfinite(c) and c > 0 else 1.0


def _theta_unit(design: Design) -> np.ndarray:
    """The natural unit of each θ entry, in which the optimizer's start and tolerances have
    their meaning: its covariate's scale (`ReStructure.theta_scale`) over √(the weights' scale)
    (weights of 1e4 once left a sleepstudy slope model at a wrong boundary fit reported as
    converged)."""
    return design.structure.theta_scale() / np.sqrt(_weight_scale(design))


def _theta_start(design: Design, unit: np.ndarray, fx) -> np.ndarray:
    """lme4's θ = 1 in θ's units, lowered per scalar intercept term to its method-of-moments sd
    relative to the residual sd of the least-squares fit (InstEval: 16 → 12 quasi-Newton
    iterations). The least-squares fit is `fx`'s (`objective.fixed_cross_products`), its
    residual variance the gaussian family's start (Σ w r² over the residual degrees of
    freedom, as `glm_irls` gives it)."""
    s = design.structure
    if not any(k == 1 for k in s.k):
        return s.theta_start() * unit  # the moments serve scalar terms only
    beta0 = fx.beta0
    phi0 = design.family.dispersion.start(fx.r, np.zeros_like(fx.r), design.wt, len(design.y) - design.p)
    if not (np.isfinite(phi0) and phi0 > 0):
        return s.theta_start() * unit
    # φ is the variance of a row of weight 1: the moment sd in θ's units (an intercept's unit
    # is 1/√c) is sd √c / √φ, clipped there
    in_units = moment_theta_start(s, design.X, design.y, design.wt, design.offset, design.family,
                                  beta0, phi0, unit=float(np.sqrt(phi0 / _weight_scale(design))))
    return in_units * unit


def _solution(design: Design, prob, theta, reml: bool, summary=None) -> ob.LmmSummary:
    """The LMM solution at the optimizer's θ, or a FitError saying why there is none: where the
    random effects reproduce the response, the residual variance goes to 0 and θ to infinity.
    Where the optimizer stops on that road depends on rounding -- at a system that can no
    longer be factored, or at a huge θ that still can -- so both ends are named alike: a
    residual sd below 1e-6 of the response's spread is that road, never a fit."""
    try:
        sol = summary(theta) if summary is not None else None
        sol = ob.lmm_summary(prob, theta, reml) if sol is None else sol
    except np.linalg.LinAlgError:
        raise _no_finite_maximum(design, theta, "the penalized least-squares system is singular") from None
    pos = design.wt > 0
    spread = float(np.std((design.y - design.offset)[pos])) if pos.any() else 0.0
    # a row's residual variance is σ²/w: the rows' average, whatever the scale of the weights
    resid_sd = float(np.sqrt(sol.sigma2 * np.mean(1.0 / design.wt[pos]))) if pos.any() else 0.0
    if spread > 0 and resid_sd < _RESIDUAL_SD_MIN * spread:
        raise _no_finite_maximum(design, theta, f"the residual sd is {resid_sd:.3g} "
                                 f"against a response spread of {spread:.4g}")
    return sol


_RESIDUAL_SD_MIN = 1e-6


def _no_finite_maximum(design: Design, theta, what: str) -> FitError:
    groups = ", ".join(f"'{t.group_name}'" for t in design.terms)
    return FitError(
        f"the linear mixed model has no finite maximum: at θ = {np.round(theta, 4).tolist()} {what}. "
        f"Usually the random effects of {groups} reproduce the response (no variation left "
        "within the groups, so the residual variance tends to 0), or a fixed effect is "
        "confounded with a grouping factor; check the response within groups or drop the term.")
