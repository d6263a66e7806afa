"""method="agq": maximum likelihood by adaptive Gauss–Hermite quadrature (seed 003 §3).

One random-effect term (scalar: lme4's nAGQ; vector: product or sparse grids), or two nested
scalar terms (nested quadrature): the quadrature itself is `glmmbayes.core.agq` and
`glmmbayes.core.nested`, driven by the shared two-stage optimizer. For a non-normal random
effect (`Spec(re_dist=...)`) this method is the exact ML: each group's integral by the
trapezoid rule of `glmmbayes.core.nonnormal`, the same optimizer and Hessian (nAGQ does not
apply: the rule is refined until it is exact).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..core import nonnormal as nn
from ..core.agq import AGQObjective, agq_rule, check_integrable
from ..core.glm import glm_irls
from ..core.nested import NestedAGQObjective, nesting
from ..core.optimize import minimize_deviance
from ..design import Design
from ..errors import CostWarning, GlmmError, SpecError
from ..estimate import Estimate, OptimizerReport, StageReport
from .ml import fit_ml, ml_estimate
from .options import Option, choice, integer, optional


KERNELS_PER_SECOND = 3e7  # log-density evaluations per second on one core (measured, order of magnitude)
COST_WARN_SECONDS = 60.0


def _warn_cost(design: Design, rule) -> None:
    """Say before a long quadrature fit what it will cost: rows x knots per objective
    evaluation, times the evaluations the optimizer needs (finite-difference gradients for
    vector terms: about 20 per parameter)."""
    d = design.terms[0].k
    npar = design.structure.ntheta + design.p
    evaluations = 40 if d == 1 else 20 * (npar + 1)
    seconds = design.n * rule.size * evaluations / KERNELS_PER_SECOND
    if seconds > COST_WARN_SECONDS:
        warnings.warn(
            f"method='agq' with nAGQ={rule.order} in {d} dimension{'s' if d > 1 else ''} evaluates "
            f"{rule.size} knots per group for each of the {design.n} rows, about {evaluations} times: "
            f"roughly {seconds / 60:.0f} minutes. Cheaper: grid='sparse', a smaller nAGQ, or "
            "method='laplace' (and fit.laplace_adequacy() to see whether quadrature matters)",
            CostWarning, stacklevel=4)


@dataclass(frozen=True)
class AGQInfo:
    """What the quadrature was: order, dimension, grid, knots per level and the work done."""

    nAGQ: int
    dim: int
    grid: str
    knots: int
    negative_weights: bool
    objective_evaluations: int
    integrand_evaluations: int
    nesting: str | None = None


def run(design: Design, *, nAGQ: int = 25, grid: str | None = None) -> Estimate:
    """Maximum likelihood by adaptive Gauss–Hermite quadrature with nAGQ knots per dimension.

    grid: "product" (k^d knots; the default for d <= 2) or "sparse" (Smolyak, exact for total
    degree 2k - 1); for d >= 3 the default is whichever has fewer knots (`default_grid`).
    """
    if design.spec.re_dist is not None:
        return _run_nonnormal(design)
    check_integrable(design, nested=True)
    nest = nesting(design)
    if nest is not None:
        return _run_nested(design, nAGQ, grid, nest)
    rule = agq_rule(design, nAGQ, grid)
    _warn_cost(design, rule)
    objective = AGQObjective(rule)
    res = fit_ml(design, objective)
    d = design.terms[0].k
    info = AGQInfo(nAGQ=nAGQ, dim=d, grid=rule.kind if d > 1 else "gauss-hermite", knots=rule.size,
                   negative_weights=rule.has_negative_weights,
                   objective_evaluations=objective.evaluations,
                   integrand_evaluations=objective.integrand_evaluations)
    return ml_estimate(design, res, method="agq", nAGQ=nAGQ, likelihood="agq", details=info)


def _run_nested(design: Design, nAGQ: int, grid, nest) -> Estimate:
    """Two nested scalar terms: nested Gauss-Hermite rules, nAGQ knots per level."""
    if grid not in (None, "product"):
        raise SpecError("nested quadrature uses Gauss-Hermite rules per level: leave grid unset")
    rule = agq_rule(design, nAGQ, None)
    outer_of, desc = nest
    objective = NestedAGQObjective(rule, outer_of)
    res = fit_ml(design, objective)
    info = AGQInfo(nAGQ=nAGQ, dim=1, grid="nested gauss-hermite", knots=rule.size ** 2,
                   negative_weights=False, objective_evaluations=objective.evaluations,
                   integrand_evaluations=objective.integrand_evaluations, nesting=desc)
    return ml_estimate(design, res, method="agq", nAGQ=nAGQ, likelihood="agq", details=info)


@dataclass(frozen=True)
class ExactQuadratureInfo:
    """The per-group trapezoid rule of a non-normal random effect's exact ML."""

    rule: str
    nodes: int
    grid_rebuilds: int


def _nonnormal_unpack(design: Design, x: np.ndarray):
    """(β, all RE parameters, φ) from the optimizer's vector (β, log estimated params[, log φ])."""
    re = design.spec.re_dist
    p = design.p
    est = {nm: math.exp(x[p + i]) for i, nm in enumerate(re.estimated)}
    phi = math.exp(x[-1]) if design.dispersion_estimated else design.fixed_phi
    return x[:p], re.values(est), phi


def _nonnormal_start(design: Design) -> np.ndarray:
    """β from the GLM with the random effect at its mean (estimated parameters at 1), the
    Pearson dispersion."""
    re = design.spec.re_dist
    mean_b = re.entry_moments(re.values({nm: 1.0 for nm in re.estimated}))[0]
    beta0, phi0 = glm_irls(design.X, design.y, design.wt, design.offset + nn.term_covariate(design) * mean_b,
                           design.family)
    x = np.concatenate([beta0, np.zeros(len(re.estimated))])
    return np.append(x, math.log(max(phi0, 1e-3))) if design.dispersion_estimated else x


def _nonnormal_deviance(design: Design, grid):
    def f(x):
        dev = -2.0 * float(np.sum(nn.group_logliks(design, *_nonnormal_unpack(design, x), grid)))
        return dev if np.isfinite(dev) else np.inf

    return f


def _grid(design: Design, x):
    grid = nn.build_grid(design, *_nonnormal_unpack(design, x))
    if grid is None:
        raise GlmmError("exact ML: a group's integrand over the random effect does not decay at "
                        "the current parameters; check the model (random-effect distribution, scale)")
    return grid


def _run_nonnormal(design: Design, max_rounds: int = 6, tol: float = 1e-9) -> Estimate:
    """Exact ML: the grid is held fixed while (β, log params, log φ) are optimized (so the
    objective is smooth), rebuilt at the optimum, and the optimization repeated until the
    parameters move less than `tol`; the Hessian comes from the last round."""
    x = _nonnormal_start(design)
    lower = np.full(len(x), -np.inf)
    settled, stages = False, {}
    for r in range(max_rounds):
        grid = _grid(design, x)
        opt = minimize_deviance(_nonnormal_deviance(design, grid), x, lower)
        stages[f"round{r + 1}"] = StageReport(opt.nfev, opt.nit, opt.trace)
        moved = float(np.max(np.abs(opt.x - x))) if x.size else 0.0
        x = opt.x
        if moved < tol:
            settled = True
            break
    grid = _grid(design, x)
    opt = minimize_deviance(_nonnormal_deviance(design, grid), x, lower, hessian=True)
    stages["final"] = StageReport(opt.nfev, opt.nit, opt.trace)
    beta, pv, phi = _nonnormal_unpack(design, opt.x)
    vcov_full = None
    if opt.hessian is not None:
        try:
            vcov_full = 2.0 * np.linalg.inv(opt.hessian)
        except np.linalg.LinAlgError:
            vcov_full = None
    vcov = vcov_full[: design.p, : design.p] if vcov_full is not None else np.full((design.p, design.p), np.nan)
    mean, var = nn.conditional_moments(design, beta, pv, phi, grid)
    m = design.terms[0].nlevels
    re = design.spec.re_dist
    names = tuple(design.fixef_names) + tuple(f"log({nm})" for nm in re.estimated)
    names += ("log(phi)",) if design.dispersion_estimated else ()
    report = OptimizerReport(stages=stages, gradient=opt.grad, hessian=opt.hessian, n_checked=len(x),
                             success=opt.success, message=opt.message)
    msgs = [] if settled else [f"exact ML did not settle within {max_rounds} grid rebuilds"]
    for i, nm in enumerate(re.estimated):
        if abs(opt.x[design.p + i]) > 25:  # e^25: the parameter ran off to its boundary
            msgs.append(f"boundary fit: the random-effect parameter {nm} = {pv[nm]:.3g} went to its "
                        f"{'upper' if opt.x[design.p + i] > 0 else 'lower'} limit (the random effect "
                        "degenerates); the model is not identified on these data")
    return Estimate(
        method="agq", estimate_kind="ml", beta=beta, vcov_beta=vcov, theta=np.zeros(0), phi=phi,
        u=None, u_condvar=None, ranef=(mean.reshape(m, 1),), ranef_condvar=(var.reshape(m, 1, 1),),
        loglik=-0.5 * opt.fun, likelihood="exact", vcov_full=vcov_full, vcov_full_names=names,
        optimizer=report, re_params=pv, method_converged=settled, messages=tuple(msgs),
        details=ExactQuadratureInfo("trapezoid in log u" if re.support == "positive" else "trapezoid",
                                    grid.K, len(stages) - 1),
    )


OPTIONS = (
    Option("nAGQ", 25, integer(1), "quadrature knots per dimension (nAGQ=1 is Laplace)"),
    Option("grid", None, optional(choice("product", "sparse")), "vector terms: product or sparse grid"),
)


def deviance_objective(design: Design, *, nAGQ: int = 25, grid: str | None = None):
    """The deviance in (θ, β) that an AGQ fit maximizes (for profiles)."""
    if design.spec.re_dist is not None:
        raise SpecError("profiles of non-normal random-effect fits are not available")
    nest = nesting(design)
    if nest is not None:
        return NestedAGQObjective(agq_rule(design, nAGQ, None), nest[0])
    return AGQObjective(agq_rule(design, nAGQ, grid))
