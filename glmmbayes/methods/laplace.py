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
from ._ml import fit_ml
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
    st = res.state
    opt = res.stage2 if res.stage2 is not None else res.stage1
    msgs, ok = convergence_messages(design, res.theta, opt, res.pirls_failures,
                                    n_main=len(res.theta) + (0 if nAGQ == 0 else design.p))
    return Fit(
        design=design,
        method="laplace" if nAGQ == 1 else "nagq0",
        beta_hat=res.beta,
        vcov_beta=res.vcov,
        theta_hat=res.theta,
        phi=res.phi,
        u=st.u,
        u_condvar=tuple(st.factor.inverse_diag_blocks()),
        loglik=-0.5 * res.deviance,
        converged=ok,
        messages=tuple(msgs),
        seconds=time.perf_counter() - t0,
        nAGQ=nAGQ,
        optinfo={
            "stage1": {"nfev": res.stage1.nfev, "nit": res.stage1.nit, "trace": res.stage1.trace},
            "stage2": None if res.stage2 is None else {
                "nfev": res.stage2.nfev, "nit": res.stage2.nit, "trace": res.stage2.trace},
            "gradient": opt.grad,
            "hessian": opt.hessian,
            "vcov_full": res.vcov_full,
        },
        raw=res,
    )


def fit_lmm(design: Design) -> Fit:
    """The linear mixed model: the profiled (RE)ML deviance over θ, as lme4's lmer."""
    t0 = time.perf_counter()
    reml = bool(design.spec.REML)
    prob = design.problem()
    s = design.structure

    def f(theta):
        return ob.lmm(prob, theta, reml).deviance

    opt = minimize_deviance(f, s.theta_start(), s.theta_lower, hessian=True)
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
