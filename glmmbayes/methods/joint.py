"""method="joint": joint maximization of log f(y, u | β, θ) over (β, u) at a given θ.

This is the h-likelihood mode of Lee & Nelder, i.e. the posterior mode of (β, u) under a flat
prior on β, computed by PIRLS over (u, β) together (`core.pirls.pirls(..., fit_beta=True)`) at a
fixed θ. θ (the variance components) is *not* estimated by joint maximization -- maximizing
over θ as well degenerates -- and comes from a stated criterion:

- ``theta="pql"`` (default): the PQL estimate with estimated dispersion (MASS::glmmPQL's),
  converted to the absolute random-effect covariance σ²Λ_relΛ_rel';
- ``theta="laplace"``: the Laplace maximum-likelihood estimate;
- an array in ``design.theta_names`` order, or a dict {theta name: value}: user-fixed values
  (absolute scale for GLMMs, lme4's convention).

For families with a dispersion parameter φ is taken from the same source (PQL's σ², the Laplace
estimate), or from ``phi=`` (required with a user-fixed θ for such families).

Parameterization
----------------
The mode is taken in the spherical parameterization  b = Λ(θ) u,  u ~ N(0, I)  and recorded as
``optinfo["parameterization"]``. A mode is not invariant to a non-linear reparameterization of
the random effects (McCulloch's normal–exponential example, seed 000: joint maximization in
u^½ and in w give different β). For normal random effects a reparameterization b = Λu is linear,
so it changes log f(y, ·) only by the constant log|det Λ| and the (β, b) mode is the image of the
(β, u) mode: the β mode is the same in u or b (tested). It would differ for non-normal random
effects or a non-linear map.

Standard errors of β come from the joint Hessian of −log f(y, u | β, θ) in (u, β) (the bordered
PIRLS factor: (R_X R_X')⁻¹ = the β block of its inverse; Fisher scoring weights, so the expected
Hessian for non-canonical links). They are conditional on θ: the uncertainty in θ is ignored.

There is no marginal likelihood here: ``fit.loglik`` is None; the joint log-density at the mode,
log f(y | u, β) + log N(u; 0, I), is ``optinfo["joint_loglik"]`` (in the u parameterization;
``optinfo["joint_loglik_b"]`` is the same density for b = Λu, lower by log|det Λ|, or None when
Λ is singular). ``estimate_kind="mode"``.
"""

from __future__ import annotations

import math
import time
from typing import Mapping

import numpy as np

from ..core import objective as ob
from ..core.glm import glm_irls
from ..core.pirls import penalized_deviance, pirls
from ..design import Design
from ..errors import SpecError
from ..fit import Fit

PARAMETERIZATION = "spherical u: b = Λ(θ) u, u ~ N(0, I)"
_LOG_2PI = math.log(2.0 * math.pi)


def _theta_from_user(design: Design, theta) -> np.ndarray:
    names = list(design.theta_names)
    if isinstance(theta, Mapping):
        unknown = [k for k in theta if k not in names]
        missing = [k for k in names if k not in theta]
        if unknown or missing:
            raise SpecError(
                f"theta dict must name every variance parameter exactly: "
                f"unknown {unknown}, missing {missing}; names are {names}"
            )
        th = np.array([float(theta[k]) for k in names])
    else:
        th = np.asarray(theta, dtype=float).ravel()
        if th.shape != (len(names),):
            raise SpecError(f"theta must have {len(names)} values ({', '.join(names)}), got {th.size}")
    if not np.all(np.isfinite(th)):
        raise SpecError(f"theta must be finite, got {th}")
    low = design.theta_lower
    if np.any(th < low):
        i = int(np.flatnonzero(th < low)[0])
        raise SpecError(f"theta '{names[i]}' is a standard-deviation factor and must be >= 0, got {th[i]}")
    return th


def fit(design: Design, *, theta="pql", phi: float | None = None, maxit: int = 200, **source_options) -> Fit:
    """Joint (h-likelihood) mode of (β, u) at θ; see the module docstring.

    theta: "pql" (default), "laplace", an array in design.theta_names order or a dict by name.
    phi: dispersion for families that have one (default: from the θ source).
    maxit: PIRLS iterations.
    source_options: passed to the θ source (e.g. niter for "pql").
    """
    t0 = time.perf_counter()
    fam = design.family
    s = design.structure
    source_fit = None
    msgs: list[str] = []
    if isinstance(theta, str):
        if theta == "pql":
            from . import pql

            source_fit = pql.fit(design, dispersion="estimated", **source_options)
        elif theta == "laplace":
            from . import laplace

            source_fit = laplace.fit(design, **source_options)
        else:
            raise SpecError(f"theta must be 'pql', 'laplace', an array or a dict, got {theta!r}")
        theta_fit = source_fit.theta_hat
        phi_src = source_fit.phi
        msgs += [f"theta from {theta}: {m}" for m in source_fit.messages]
        source = theta
    else:
        if source_options:
            raise SpecError(f"unknown options {sorted(source_options)} for a user-fixed theta")
        theta_fit = _theta_from_user(design, theta)
        phi_src = None
        source = "fixed"
    if fam.has_dispersion:
        if phi is None:
            if phi_src is None:
                raise SpecError(f"family {fam.name} has a dispersion: pass phi= with a fixed theta")
            phi = phi_src
        if not (phi > 0):
            raise SpecError(f"phi must be positive, got {phi!r}")
        phi = float(phi)
    else:
        phi = 1.0
    # the core works with the absolute Λ (b = Λu, u ~ N(0, I)); lme4's LMM θ is relative to σ
    rel = fam.is_lmm
    sigma = math.sqrt(phi)
    theta_abs = sigma * theta_fit if rel else np.asarray(theta_fit, float)

    prob = design.problem()
    beta0 = source_fit.beta_hat if source_fit is not None else glm_irls(
        design.X, design.y, design.wt, design.offset, fam)[0]
    st = pirls(prob, theta_abs, beta0, None, fit_beta=True, phi=phi, maxit=maxit, tol=1e-14)
    if not st.converged:
        # the joint mode exists and PIRLS is Newton on a concave objective (canonical link);
        # a start from the GLM fit is the fallback when a warm start misbehaves
        b_glm = glm_irls(design.X, design.y, design.wt, design.offset, fam)[0]
        st2 = pirls(prob, theta_abs, b_glm, None, fit_beta=True, phi=phi, maxit=maxit, tol=1e-14)
        if st2.converged or st2.pdev < st.pdev:
            st = st2
    if not st.converged:
        msgs.append(f"PIRLS for the joint mode did not converge in {maxit} iterations")

    cond = ob.conditional_loglik(prob, st.eta, phi)
    joint_u = cond - 0.5 * float(st.u @ st.u) - 0.5 * s.q * _LOG_2PI
    logdet = 0.0
    for T, m in zip(s.lambdas(theta_abs), s.m):
        d = np.abs(np.diag(T))
        logdet = -np.inf if np.any(d == 0) else logdet + m * float(np.sum(np.log(d)))
    joint_b = None if not np.isfinite(logdet) else joint_u - logdet

    u_fit = sigma * st.u if rel else st.u
    return Fit(
        design=design,
        method="joint",
        beta_hat=st.beta.copy(),
        vcov_beta=st.factor.rx_inverse(),
        theta_hat=np.asarray(theta_fit, float).copy(),
        phi=phi,
        u=u_fit,
        u_condvar=tuple(st.factor.inverse_diag_blocks()),
        loglik=None,
        converged=bool(st.converged and (source_fit is None or source_fit.converged)),
        messages=tuple(msgs),
        seconds=time.perf_counter() - t0,
        nAGQ=None,
        estimate_kind="mode",
        optinfo={
            "parameterization": PARAMETERIZATION,
            "theta_source": source,
            "theta_abs": theta_abs,
            "joint_loglik": joint_u,
            "joint_loglik_b": joint_b,
            "conditional_loglik": cond,
            "penalized_deviance": penalized_deviance(prob, st.eta, st.u, phi),
            "pirls_iterations": st.iterations,
            "pirls_converged": st.converged,
            "se_note": "SEs from the joint Hessian in (u, beta), conditional on theta",
            "theta_fit": source_fit,
        },
        raw=st,
    )
