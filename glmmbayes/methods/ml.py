"""The two-stage maximum-likelihood driver shared by `laplace` and `agq`.

Stage 1 optimizes θ alone with β inside PIRLS (lme4's nAGQ = 0, MixedModels.jl `fast=true`).
Stage 2 optimizes (θ, β) on the Laplace or AGQ deviance from there, with β whitened by the
stage-1 covariance so the quasi-Newton steps are well scaled. Families with a dispersion
(Gamma, non-identity gaussian) carry log φ as one more parameter in both stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core import objective as ob
from ..core.glm import glm_irls
from ..core.linalg import factorize
from ..core.optimize import OptResult, minimize_deviance
from ..core.pirls import PirlsState, pirls
from ..design import Design
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


def fit_ml(design: Design, nAGQ_objective: Objective | None, *, fast_only: bool = False) -> MLResult:
    t0 = time.perf_counter()
    prob = design.problem()
    s = design.structure
    fam = design.family
    nth = s.ntheta
    beta0, phi0 = glm_irls(design.X, design.y, design.wt, design.offset, fam)
    disp = design.dispersion_estimated
    phi_fixed = design.fixed_phi
    warm = ob.WarmStart(s.q, beta0)

    # ---- stage 1: θ (and log φ) with β profiled by PIRLS
    def f1(x):
        phi = float(np.exp(x[nth])) if disp else phi_fixed
        return ob.nagq0(prob, x[:nth], warm, phi)

    def vg1(x):
        phi = float(np.exp(x[nth])) if disp else phi_fixed
        st1 = pirls(prob, x[:nth], warm.beta, warm.u, fit_beta=True, phi=phi)
        warm.update(st1)
        g = np.full(len(x), np.nan)
        if not np.isfinite(st1.pdev):
            return np.inf, g
        gt = ob.laplace_gradient(prob, st1, phi, beta=False, profiled_beta=True)[0]
        if gt is not None:
            g[:nth] = gt
        return ob.laplace_value(prob, st1, phi), g

    x1 = s.theta_start()
    lo1 = s.theta_lower
    if disp:
        x1 = np.append(x1, np.log(phi0))
        lo1 = np.append(lo1, -np.inf)
    # stage 1 only provides the start and the β scaling for stage 2 unless it is the answer
    loose = {} if fast_only else {"ftol": 1e-10, "gtol": 1e-5}
    r1 = minimize_deviance(f1, x1, lo1, hessian=fast_only, value_and_grad=vg1, **loose)
    theta = r1.x[:nth]
    phi = float(np.exp(r1.x[nth])) if disp else phi_fixed
    st = pirls(prob, theta, warm.beta, warm.u, fit_beta=True, phi=phi)
    beta = st.beta
    vcov_cond = st.factor.rx_inverse()  # unscaled: W already carries 1/φ
    failures = warm.pirls_failures
    if fast_only:
        dev = ob.laplace_value(prob, st, phi)
        return MLResult(theta, beta, phi, dev, vcov_cond, None, st, r1, None, failures,
                        time.perf_counter() - t0)

    # ---- stage 2: (θ, β[, log φ]) on the Laplace/AGQ deviance
    p = len(beta)
    warm2 = ob.WarmStart(s.q, beta)
    warm2.u = st.u

    def f2(x):
        phi_ = float(np.exp(x[nth + p])) if disp else phi_fixed
        return nAGQ_objective(prob, x[:nth], x[nth : nth + p], warm2, phi_)

    def vg(x):
        phi_ = float(np.exp(x[nth + p])) if disp else phi_fixed
        fx, gt, gb = nAGQ_objective.value_and_grad(prob, x[:nth], x[nth : nth + p], warm2, phi_)
        g = np.full(len(x), np.nan)
        if gt is not None:
            g[:nth] = gt
        if gb is not None:
            g[nth : nth + p] = gb
        return fx, g

    x2 = np.concatenate([theta, beta] + ([[np.log(phi)]] if disp else []))
    lo2 = np.concatenate([s.theta_lower, np.full(p, -np.inf)] + ([[-np.inf]] if disp else []))
    P = np.eye(len(x2))
    try:
        P[nth : nth + p, nth : nth + p] = np.linalg.cholesky(vcov_cond)
    except np.linalg.LinAlgError:
        pass
    # θ scaled by stage 1's quasi-Newton curvature (deviance scale: sd = sqrt(2 h^-1)), so that
    # every coordinate of stage 2 has curvature near one
    ihd = r1.inv_hessian_diag
    if ihd is not None and np.all(np.isfinite(ihd[:nth])):
        P[np.arange(nth), np.arange(nth)] = np.clip(np.sqrt(2.0 * np.maximum(ihd[:nth], 0.0)), 0.02, 5.0)
    has_grad = hasattr(nAGQ_objective, "value_and_grad")
    r2 = minimize_deviance(f2, x2, lo2, P, hessian=True, value_and_grad=vg if has_grad else None,
                           ftol=1e-12, gtol=1e-6)
    theta = r2.x[:nth]
    beta = r2.x[nth : nth + p]
    phi = float(np.exp(r2.x[nth + p])) if disp else phi_fixed
    st = pirls(prob, theta, beta, warm2.u, phi=phi)
    vcov_full = None
    vcov = None
    if r2.hessian is not None:
        try:
            vcov_full = 2.0 * np.linalg.inv(r2.hessian)
            vcov = vcov_full[nth : nth + p, nth : nth + p]
            if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) <= 0):
                vcov = None
        except np.linalg.LinAlgError:
            vcov_full = None
    if vcov is None:
        # as lme4 falls back when the finite-difference Hessian is not positive definite
        vcov = factorize(s, st.V, st.weights, design.X).rx_inverse()
    return MLResult(theta, beta, phi, r2.fun, vcov, vcov_full, st, r1, r2,
                    failures + warm2.pirls_failures, time.perf_counter() - t0)


def _stage(r: OptResult) -> StageReport:
    return StageReport(nfev=r.nfev, nit=r.nit, trace=r.trace)


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
        names = tuple(design.theta_names) + tuple(design.fixef_names)
        names += ("log(phi)",) * (res.vcov_full.shape[0] - len(names))
    return Estimate(
        method=method, estimate_kind="ml", beta=res.beta, vcov_beta=res.vcov, theta=res.theta,
        phi=res.phi, u=res.state.u, u_condvar=tuple(res.state.factor.inverse_diag_blocks()),
        loglik=-0.5 * res.deviance, likelihood=likelihood, nAGQ=nAGQ, vcov_full=res.vcov_full,
        vcov_full_names=names, optimizer=report, details=details,
    )
