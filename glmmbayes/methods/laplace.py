"""method="laplace": maximum likelihood with the Laplace approximation (nAGQ = 1), or lme4's fast
nAGQ = 0 criterion; the gaussian/identity model is the LMM, whose likelihood is exact."""

from __future__ import annotations

import time

import numpy as np

from ..core import objective as ob
from ..core.optimize import minimize_deviance
from ..core.pirls import pirls
from ..design import Design
from ..fit import Fit
from ._ml import fit_ml, ml_fit
from .checks import convergence_messages


class _LaplaceObjective:
    """The Laplace deviance, with its analytic β-gradient where the link is canonical."""

    def __call__(self, prob, theta, beta, warm, phi):
        return ob.laplace(prob, theta, beta, warm, phi)

    def value_and_grad(self, prob, theta, beta, warm, phi):
        st = pirls(prob, theta, beta, warm.u, phi=phi)
        warm.update(st)
        if not np.isfinite(st.pdev):
            return np.inf, None, None
        return (ob.laplace_value(prob, st, phi), *ob.laplace_gradient(prob, st, phi))


_laplace_objective = _LaplaceObjective()


def fit(design: Design, nAGQ: int = 1) -> Fit:
    if design.family.is_lmm:
        return fit_lmm(design)
    if nAGQ not in (0, 1):
        from . import agq

        return agq.fit(design, nAGQ=nAGQ)
    t0 = time.perf_counter()
    res = fit_ml(design, _laplace_objective, fast_only=(nAGQ == 0))
    return ml_fit(design, res, method="laplace" if nAGQ == 1 else "nagq0", nAGQ=nAGQ, t0=t0)


def fit_lmm(design: Design) -> Fit:
    """The linear mixed model: the profiled (RE)ML deviance over θ, as lme4's lmer."""
    t0 = time.perf_counter()
    reml = bool(design.spec.REML)
    prob = design.problem()
    s = design.structure

    def f(theta):
        return ob.lmm(prob, theta, reml).deviance

    def vg(theta):
        sol = ob.lmm(prob, theta, reml)
        return sol.deviance, ob.lmm_gradient(prob, sol, reml)

    opt = minimize_deviance(f, s.theta_start(), s.theta_lower, hessian=True, value_and_grad=vg)
    sol = ob.lmm(prob, opt.x, reml)
    msgs, ok = convergence_messages(design, opt.x, opt, 0, n_main=len(opt.x))
    return Fit(
        design=design,
        method="laplace",
        beta_hat=sol.beta,
        vcov_beta=sol.sigma2 * sol.factor.rx_inverse(),
        theta_hat=opt.x,
        phi=sol.sigma2,
        u=sol.u,
        u_condvar=tuple(sol.factor.inverse_diag_blocks()),
        loglik=-0.5 * sol.deviance,
        converged=ok,
        messages=tuple(msgs),
        seconds=time.perf_counter() - t0,
        nAGQ=1,
        reml_criterion=sol.deviance if reml else None,
        optinfo={"stage1": {"nfev": opt.nfev, "nit": opt.nit, "trace": opt.trace},
                 "gradient": opt.grad, "hessian": opt.hessian},
        raw=sol,
    )
