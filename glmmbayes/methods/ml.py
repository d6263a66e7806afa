"""The two-stage maximum-likelihood driver shared by `laplace` and `agq`.

Stage 1 optimizes θ alone with β inside PIRLS (lme4's nAGQ = 0, MixedModels.jl `fast=true`).
Stage 2 optimizes (θ, β) on the Laplace or AGQ deviance from there, with β whitened by the
stage-1 covariance so the quasi-Newton steps are well scaled. Families with a dispersion
(Gamma, non-identity gaussian) carry log φ as one more parameter in both stages.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core import objective as ob
from ..core.glm import glm_irls, moment_theta_start
from ..core.linalg import factorize
from ..core.optimize import OptResult, minimize_deviance
from ..core.pirls import PirlsState
from ..design import Design
from ..errors import FitError
from ..estimate import Estimate, OptimizerReport, StageReport


@dataclass(frozen=True)
class MLResult:
    theta: np.ndarray
    beta: np.ndarray
    phi: float
    deviance: float  # -2 log-likelihood at the optimum (fully normalized)
    vcov: np.ndarray  # of beta
    vcov_full: np.ndarray | None  # of (theta, beta[, log phi]) from the Hessian
    state: PirlsState  # conditional modes at the optimum
    stage1: OptResult
    stage2: OptResult | None
    pirls_failures: int
    seconds: float


# Objective signature: (problem, theta, beta, warm, phi) -> deviance; an objective may also
# offer value_and_grad(...) -> (deviance, gradient in θ or None, gradient in β or None)
Objective = Callable


def fit_ml(design: Design, nAGQ_objective: Objective | None, *, fast_only: bool = False,
           hessian: str = "observed", reml: bool = False) -> MLResult:
    """Stage 1, and unless `fast_only` (nAGQ = 0, or REML) stage 2 on `nAGQ_objective`.

    hessian: the information in the Laplace log-determinant of stage 1 ("observed": the Laplace
    approximation proper; "expected": lme4's). reml: stage 1 optimizes the GLMM REML criterion
    (β integrated out as in `core.objective.reml_value`) and is the answer."""
    t0 = time.perf_counter()
    prob = design.problem()
    fast_only = fast_only or reml
    sub = None if fast_only else _subsample(design)
    start = None if sub is None else _stage1_on_subsample(design, sub, hessian)
    if start is None:
        beta0, phi0 = glm_irls(design.X, design.y, design.wt, design.offset, design.family)
        warm = ob.WarmStart(design.structure.q, beta0)
        r1 = _stage1(design, prob, warm, beta0, phi0, fast_only, hessian, reml)
    else:
        r1, beta_sub, sub_failures = start
        warm = ob.WarmStart(design.structure.q, beta_sub)
        warm.pirls_failures = sub_failures
    nth = design.structure.ntheta
    theta = r1.x[:nth]
    phi = _phi(design, r1.x, nth)
    st = _require(warm.solve(prob, theta, fit_beta=True, phi=phi, hessian=hessian), "stage 1", design)
    if fast_only:
        dev = ob.reml_value(prob, st, phi) if reml else ob.laplace_value(prob, st, phi)
        return MLResult(theta, st.beta, phi, dev, st.factor.rx_inverse(), _stage1_vcov(design, r1),
                        st, r1, None, warm.pirls_failures, time.perf_counter() - t0)
    warm2 = ob.WarmStart(design.structure.q, st.beta)
    warm2.u = st.u
    r2 = _stage2(design, prob, nAGQ_objective, warm2, st, r1, phi)
    p = design.p
    theta, beta, phi = r2.x[:nth], r2.x[nth : nth + p], _phi(design, r2.x, nth + p)
    st = _require(warm2.solve(prob, theta, beta, phi=phi, hessian=getattr(nAGQ_objective, "hessian", "observed")),
                  "the optimum", design)
    vcov, vcov_full = _covariances(design, r2, st)
    return MLResult(theta, beta, phi, r2.fun, vcov, vcov_full, st, r1, r2,
                    warm.pirls_failures + warm2.pirls_failures, time.perf_counter() - t0)


# a fit of at least this many rows takes its stage 1 on about _SUBSAMPLE_ROWS rows of whole
# groups, where at least _SUBSAMPLE_MIN_LEVELS levels of the first term remain
_SUBSAMPLE_MIN_ROWS = 400_000
_SUBSAMPLE_ROWS = 125_000
_SUBSAMPLE_MIN_LEVELS = 500


def _subsample(design: Design) -> Design | None:
    """Every step-th group of the first term, for stage 1 of a large fit, or None.

    Stage 1 only gives stage 2 its start and scaling, and on thousands of groups a subsample
    of them places it within sampling error of the full stage 1 for a fraction of its cost
    (nAGQ = 0 solves (u, β) by several Newton steps per evaluation); stage 2 converges to the
    optimum of the full data from there. None where the subsample would be too small to say
    much, or loses a fixed-effect column (a factor level seen only in the dropped groups), and
    for more than one term: a crossed term keeps its levels with fewer rows each, and stage 2
    took longer from there than the full stage 1 saves (500k rows crossed with 200 levels:
    21 evaluations against 14)."""
    n = design.n
    if n < _SUBSAMPLE_MIN_ROWS or len(design.terms) != 1:
        return None
    step = n // _SUBSAMPLE_ROWS
    if design.terms[0].nlevels < step * _SUBSAMPLE_MIN_LEVELS:
        return None
    sub = design.level_subsample(step)
    if any(t.nlevels < 2 for t in sub.terms) or np.linalg.matrix_rank(sub.X) < design.p:
        return None
    return sub


def _stage1_on_subsample(design: Design, sub: Design, hessian: str):
    """(stage 1 on `sub`, its β at the optimum, PIRLS failures), its quasi-Newton curvature of
    each θ scaled to the full design's number of levels; None where it did not converge (the
    full stage 1 runs instead)."""
    sprob = sub.problem()
    beta0, phi0 = glm_irls(sub.X, sub.y, sub.wt, sub.offset, sub.family)
    warm = ob.WarmStart(sub.structure.q, beta0)
    r1 = _stage1(sub, sprob, warm, beta0, phi0, False, hessian, False)
    nth = sub.structure.ntheta
    if not (r1.success and np.isfinite(r1.fun)):
        return None
    st = warm.solve(sprob, r1.x[:nth], fit_beta=True, phi=_phi(sub, r1.x, nth), hessian=hessian)
    if not (st.converged and np.isfinite(st.pdev)):
        return None
    ihd = r1.inv_hessian_diag
    if ihd is not None:
        s, full = sub.structure, design.structure
        # a θ's curvature grows with its term's number of levels
        ratio = np.repeat(np.array(s.m, float) / np.array(full.m, float), s.theta_sizes)
        ihd = np.concatenate([ihd[:nth] * ratio, ihd[nth:] * (sub.n / design.n)])
    return dataclasses.replace(r1, inv_hessian_diag=ihd, rows=sub.n), st.beta, warm.pirls_failures


def _phi(design: Design, x: np.ndarray, at: int) -> float:
    """φ from the optimizer's vector (log φ at position `at`) or the fixed value. A line search
    may try log φ far out; φ stays a positive finite float (exp underflowing to 0.0 divided by
    zero in the family's formulas), and the deviance there is simply bad."""
    return float(np.exp(np.clip(x[at], -_LOG_PHI_MAX, _LOG_PHI_MAX))) if design.dispersion_estimated else design.fixed_phi


_LOG_PHI_MAX = 230.0  # φ within 1e±100: exp(log φ) and its small powers in the family formulas stay finite


def _require(st, where: str, design: Design):
    """The PIRLS state, or a FitError saying that the Hessian could not be factored and why."""
    if st.factor is None or not np.isfinite(st.pdev):
        raise FitError(f"PIRLS failed at {where}: the Hessian of the conditional modes could not be "
                       f"factored (weights not finite or not positive definite). {overflow_hint(design, st.eta)}")
    return st


def overflow_hint(design: Design, eta) -> str:
    """What the user can do about a failed factorization: an offset or covariate on the wrong
    scale makes the linear predictor overflow; otherwise extreme values or separation."""
    off = design.offset
    big = float(np.nanmax(np.abs(eta))) if np.size(eta) and np.any(np.isfinite(eta)) else np.inf
    if np.ptp(off) > 50 or np.max(np.abs(off)) > 50:
        name = design.spec.offset or ", ".join(design.spec.parsed.offsets) or "offset"
        return (f"The offset '{name}' ranges from {off.min():.4g} to {off.max():.4g} and the linear "
                f"predictor reaches {big:.4g}: an offset is on the link scale, so exposure times or "
                "population sizes enter as log(exposure).")
    return (f"The linear predictor reaches {big:.4g}. Check the data for extreme values or "
            "separation, rescale covariates, or look at method='pql' for a rough fit.")


def _stage1_vcov(design: Design, r1: OptResult):
    """Covariance of (θ[, log φ]) from stage 1's Hessian when stage 1 is the answer."""
    if r1.hessian is None:
        return None
    try:
        return 2.0 * np.linalg.inv(r1.hessian)
    except np.linalg.LinAlgError:
        return None


def _stage1(design: Design, prob, warm, beta0, phi0: float, fast_only: bool, hessian: str, reml: bool) -> OptResult:
    """θ (and log φ) with β profiled by PIRLS: lme4's nAGQ = 0 criterion with its analytic
    θ-gradient, or the GLMM REML criterion (finite differences)."""
    s = design.structure
    nth = s.ntheta
    criterion = ob.reml if reml else ob.nagq0

    def f1(x):
        return criterion(prob, x[:nth], warm, _phi(design, x, nth), hessian)

    def vg1(x):
        phi = _phi(design, x, nth)
        st1 = warm.solve(prob, x[:nth], fit_beta=True, phi=phi, hessian=hessian)
        g = np.full(len(x), np.nan)
        if not np.isfinite(st1.pdev):
            return np.inf, g
        if not reml:
            disp = design.dispersion_estimated
            grads = ob.laplace_gradient(prob, st1, phi, beta=False, profiled_beta=True, logphi=disp, warm=warm)
            if grads[0] is not None:
                g[:nth] = grads[0]
            if disp and grads[2] is not None:
                g[nth] = grads[2]
        return (ob.reml_value if reml else ob.laplace_value)(prob, st1, phi), g

    unit = s.theta_scale()  # θ in units of its covariate's scale (intercepts: 1)
    x1 = moment_theta_start(s, design.X, design.y, design.wt, design.offset, design.family, beta0, phi0) * unit
    lo1 = s.theta_lower
    if design.dispersion_estimated:
        x1, lo1, unit = np.append(x1, np.log(phi0)), np.append(lo1, -np.inf), np.append(unit, 1.0)
    # stage 1 only provides the start and the β scaling for stage 2 unless it is the answer
    loose = {} if fast_only else {"ftol": 1e-7, "gtol": 1e-3}
    return minimize_deviance(f1, x1, lo1, np.diag(unit), hessian=fast_only, value_and_grad=vg1,
                             fscale=1.0 + design.n, restart_at_bound=True, **loose)


def _stage2(design: Design, prob, objective, warm2, st, r1: OptResult, phi: float) -> OptResult:
    """(θ, β[, log φ]) on the Laplace/AGQ deviance, β whitened by stage 1's covariance and θ
    scaled by stage 1's quasi-Newton curvature."""
    s = design.structure
    nth, p = s.ntheta, design.p
    disp = design.dispersion_estimated

    def f2(x):
        return objective(prob, x[:nth], x[nth : nth + p], warm2, _phi(design, x, nth + p))

    logphi = disp and getattr(objective, "supports_logphi", False)

    def vg(x):
        phi_ = _phi(design, x, nth + p)
        if logphi:
            fx, gt, gb, gphi = objective.value_and_grad(prob, x[:nth], x[nth : nth + p], warm2, phi_, logphi=True)
        else:
            (fx, gt, gb), gphi = objective.value_and_grad(prob, x[:nth], x[nth : nth + p], warm2, phi_), None
        g = np.full(len(x), np.nan)
        if gt is not None:
            g[:nth] = gt
        if gb is not None:
            g[nth : nth + p] = gb
        if gphi is not None:
            g[nth + p] = gphi
        return fx, g

    x2 = np.concatenate([r1.x[:nth], st.beta] + ([[np.log(phi)]] if disp else []))
    lo2 = np.concatenate([s.theta_lower, np.full(p, -np.inf)] + ([[-np.inf]] if disp else []))
    P = np.eye(len(x2))
    try:
        P[nth : nth + p, nth : nth + p] = np.linalg.cholesky(st.factor.rx_inverse())  # W carries 1/φ
    except np.linalg.LinAlgError:
        pass
    # deviance scale: sd = sqrt(2 h^-1), so every coordinate of stage 2 has curvature near one
    ihd = r1.inv_hessian_diag
    if ihd is not None and np.all(np.isfinite(ihd[:nth])):
        unit = s.theta_scale()  # the clip is in units of each θ's covariate scale
        P[np.arange(nth), np.arange(nth)] = np.clip(np.sqrt(2.0 * np.maximum(ihd[:nth], 0.0)), 0.02 * unit, 5.0 * unit)
    has_grad = hasattr(objective, "value_and_grad")
    return minimize_deviance(f2, x2, lo2, P, hessian=True, value_and_grad=vg if has_grad else None,
                             ftol=1e-10, gtol=1e-5, fscale=1.0 + design.n)


def _covariances(design: Design, r2: OptResult, st) -> tuple[np.ndarray, np.ndarray | None]:
    """(vcov of β, vcov of every optimized parameter) from the deviance Hessian; β's falls back
    to the conditional (RX RX')⁻¹ where the Hessian is not usable, as lme4 does."""
    nth, p = design.structure.ntheta, design.p
    vcov_full = vcov = None
    if r2.hessian is not None:
        try:
            vcov_full = 2.0 * np.linalg.inv(r2.hessian)
            vcov = vcov_full[nth : nth + p, nth : nth + p]
            if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) <= 0):
                vcov = None
        except np.linalg.LinAlgError:
            vcov_full = None
    if vcov is None:
        try:
            vcov = factorize(design.structure, st.V, st.weights, design.X).rx_inverse()
        except np.linalg.LinAlgError:  # X'WX not positive definite given the modes: no SEs
            vcov = np.full((p, p), np.nan)
    return vcov, vcov_full


def _stage(r: OptResult) -> StageReport:
    return StageReport(nfev=r.nfev, nit=r.nit, trace=r.trace, rows=r.rows)


def ml_estimate(design: Design, res: MLResult, *, method: str, nAGQ: int, likelihood: str,
                details=None) -> Estimate:
    """The Estimate of a two-stage ML result: the optimizer's report for the builder's checks."""
    final = res.stage2 if res.stage2 is not None else res.stage1
    stages = {"stage1": _stage(res.stage1)}
    if res.stage2 is not None:
        stages["stage2"] = _stage(res.stage2)
    n_checked = len(res.theta) + (design.p if res.stage2 is not None else 0)
    report = OptimizerReport(stages=stages, gradient=final.grad, hessian=final.hessian,
                             n_checked=n_checked, success=final.success, message=final.message,
                             pirls_failures=res.pirls_failures)
    names = None
    if res.vcov_full is not None:
        names = tuple(design.theta_names) + (tuple(design.fixef_names) if res.stage2 is not None else ())
        names += ("log(phi)",) * (res.vcov_full.shape[0] - len(names))
    return Estimate(
        method=method, estimate_kind="ml", beta=res.beta, vcov_beta=res.vcov, theta=res.theta,
        phi=res.phi, u=res.state.u, u_condvar=tuple(res.state.factor.inverse_diag_blocks()),
        loglik=-0.5 * res.deviance, likelihood=likelihood, nAGQ=nAGQ,
        reml_criterion=res.deviance if likelihood == "reml" else None, vcov_full=res.vcov_full,
        vcov_full_names=names, optimizer=report, details=details,
    )
