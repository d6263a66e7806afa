"""method="joint": joint maximization of log f(y, u | β, θ) over (β, u) at a given θ.

This is the h-likelihood mode of Lee & Nelder, i.e. the posterior mode of (β, u) under a flat
prior on β, computed by PIRLS over (u, β) together (`core.pirls.pirls(..., fit_beta=True)`) at a
fixed θ. θ (the variance components) is *not* estimated by joint maximization -- maximizing
over θ as well degenerates -- and comes from a stated criterion:

- ``theta="pql"`` (default): the PQL estimate with estimated dispersion (MASS::glmmPQL's),
  converted to the absolute random-effect covariance σ²Λ_relΛ_rel';
- ``theta="laplace"``: the Laplace maximum-likelihood estimate;
  (the method table runs the source method first and hands its Fit to `run` as ``source``:
  methods never call each other)
- an array in ``design.theta_names`` order, or a dict {theta name: value}: user-fixed values
  (absolute scale for GLMMs, lme4's convention).

For families with a dispersion parameter φ is taken from the same source (PQL's σ², the Laplace
estimate), or from ``phi=`` (required with a user-fixed θ for such families).

Parameterization
----------------
The mode is taken in the spherical parameterization  b = Λ(θ) u,  u ~ N(0, I)  and recorded as
``fit.details.parameterization``. A mode is not invariant to a non-linear reparameterization of
the random effects (McCulloch's normal–exponential example, seed 000: joint maximization in
u^½ and in w give different β). For normal random effects a reparameterization b = Λu is linear,
so it changes log f(y, ·) only by the constant log|det Λ| and the (β, b) mode is the image of the
(β, u) mode: the β mode is the same in u or b (tested). It would differ for non-normal random
effects or a non-linear map.

Standard errors of β come from the joint Hessian of −log f(y, u | β, θ) in (u, β) (the bordered
PIRLS factor: (R_X R_X')⁻¹ = the β block of its inverse; Fisher scoring weights, so the expected
Hessian for non-canonical links). They are conditional on θ: the uncertainty in θ is ignored.

There is no marginal likelihood here: ``fit.loglik`` is None; the joint log-density at the mode,
log f(y | u, β) + log N(u; 0, I), is ``joint_loglik`` (in the u parameterization;
``joint_loglik_b`` is the same density for b = Λu, lower by log|det Λ|, or None when
Λ is singular). ``estimate_kind="mode"``. These are fields of ``fit.details`` (`JointInfo`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from scipy import optimize

from ..core import nonnormal as nn
from ..core import objective as ob
from ..core.glm import glm_irls
from ..core.pirls import penalized_deviance, pirls
from ..design import Design
from ..errors import SpecError
from ..estimate import Estimate
from .options import Option, anything, boolean, choice, integer, number, optional

PARAMETERIZATION = "spherical u: b = Λ(θ) u, u ~ N(0, I)"
THETA_SOURCES = ("pql", "laplace")


@dataclass(frozen=True)
class JointInfo:
    """The joint mode: its parameterization, where θ came from, the joint log-density there."""

    parameterization: str
    theta_source: str
    theta_abs: np.ndarray
    joint_loglik: float
    joint_loglik_b: float | None
    conditional_loglik: float
    penalized_deviance: float
    pirls_iterations: int
    pirls_converged: bool
    se_note: str
    theta_fit: Any = None  # the Fit θ came from (theta="pql" or "laplace")
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


def source_method(design: Design, options: Mapping[str, Any]):
    """The method whose θ the joint mode is taken at, or None for a user-given θ."""
    theta = options.get("theta", "pql")
    if isinstance(theta, str):
        if theta not in THETA_SOURCES:
            raise SpecError(f"theta must be 'pql', 'laplace', an array or a dict, got {theta!r}")
        return theta, ({"dispersion": "estimated"} if theta == "pql" else {})
    return None


def run(design: Design, *, theta="pql", phi: float | None = None, maxit: int = 200,
        parameterization: str | None = None, constrain: bool = True, source=None) -> Estimate:
    """Joint (h-likelihood) mode of (β, u) at θ; see the module docstring.

    theta: "pql" (default), "laplace", an array in design.theta_names order or a dict by name.
    phi: dispersion for families that have one (default: from the θ source).
    maxit: PIRLS iterations.
    parameterization, constrain: for a non-normal random effect only (`run_nonnormal`).
    source: the Fit of the θ source (given by the method table for theta="pql" / "laplace").
    """
    if design.spec.re_dist is not None:
        return run_nonnormal(design, parameterization or "u", constrain, phi, source)
    if parameterization not in (None, "u"):
        raise SpecError("parameterization applies to a non-normal random effect: for normal random "
                        "effects b = Λ(θ)u is linear, so the joint mode of β is the same in u and b")
    fam = design.family
    s = design.structure
    msgs: list[str] = []
    if isinstance(theta, str):
        theta_fit = np.asarray(source.theta_hat, float)
        phi_src = source.phi
        msgs += [f"theta from {theta}: {m}" for m in source.messages]
        origin = theta
    else:
        theta_fit = _theta_from_user(design, theta)
        phi_src = None
        origin = "fixed"
    phi = _dispersion(design, phi, phi_src)
    # the core works with the absolute Λ (b = Λu, u ~ N(0, I)); lme4's LMM θ is relative to σ
    rel = fam.is_lmm
    sigma = math.sqrt(phi)
    theta_abs = sigma * theta_fit if rel else np.asarray(theta_fit, float)
    prob = design.problem()
    beta0 = source.beta_hat if source is not None else glm_irls(
        design.X, design.y, design.wt, design.offset, fam)[0]
    st = _joint_mode(design, prob, theta_abs, beta0, phi, maxit)
    if not st.converged:
        msgs.append(f"PIRLS for the joint mode did not converge in {maxit} iterations")
    cond = ob.conditional_loglik(prob, st.eta, phi)
    joint_u = cond - 0.5 * float(st.u @ st.u) - 0.5 * s.q * _LOG_2PI
    logdet = 0.0
    for T, m in zip(s.lambdas(theta_abs), s.m):
        d = np.abs(np.diag(T))
        logdet = -np.inf if np.any(d == 0) else logdet + m * float(np.sum(np.log(d)))
    info = JointInfo(
        parameterization=PARAMETERIZATION, theta_source=origin, theta_abs=theta_abs,
        joint_loglik=joint_u, joint_loglik_b=None if not np.isfinite(logdet) else joint_u - logdet,
        conditional_loglik=cond, penalized_deviance=penalized_deviance(prob, st.eta, st.u, phi),
        pirls_iterations=st.iterations, pirls_converged=st.converged,
        se_note="SEs from the joint Hessian in (u, beta), conditional on theta", theta_fit=source,
    )
    return Estimate(
        method="joint", estimate_kind="mode", beta=st.beta.copy(), vcov_beta=st.factor.rx_inverse(),
        theta=np.asarray(theta_fit, float).copy(), phi=phi, u=sigma * st.u if rel else st.u,
        u_condvar=tuple(st.factor.inverse_diag_blocks()),
        method_converged=bool(st.converged and (source is None or source.converged)),
        messages=tuple(msgs), details=info,
    )


def _dispersion(design: Design, phi, phi_src) -> float:
    fam = design.family
    if not fam.has_dispersion:
        return 1.0
    if phi is None:
        phi = design.spec.known_dispersion if design.spec.known_dispersion is not None else phi_src
        if phi is None:
            raise SpecError(f"family {fam.name} has a dispersion: pass phi= with a fixed theta")
    if not (phi > 0):
        raise SpecError(f"phi must be positive, got {phi!r}")
    return float(phi)


def _joint_mode(design: Design, prob, theta_abs, beta0, phi, maxit):
    """PIRLS over (u, β) at θ; restarted from the GLM fit when the warm start misbehaves (the
    joint mode exists and PIRLS is Newton on a concave objective for canonical links)."""
    st = pirls(prob, theta_abs, beta0, None, fit_beta=True, phi=phi, maxit=maxit, tol=1e-14)
    if not st.converged:
        b_glm = glm_irls(design.X, design.y, design.wt, design.offset, design.family)[0]
        st2 = pirls(prob, theta_abs, b_glm, None, fit_beta=True, phi=phi, maxit=maxit, tol=1e-14)
        if st2.converged or st2.pdev < st.pdev:
            st = st2
    return st


@dataclass(frozen=True)
class NonNormalJointInfo:
    """The joint mode of a non-normal random-effect model and the parameterization it is in."""

    parameterization: str
    constrained: bool
    joint_loglik: float
    params_source: str
    nfev: int


def nonnormal_source(design: Design, opts: Mapping[str, Any]):
    """The exact ML fit supplies estimated random-effect parameters and φ (the joint mode needs
    them known); None when everything is known."""
    need_phi = design.dispersion_estimated and opts.get("phi") is None
    return ("agq", {}, True) if (design.spec.re_dist.estimated or need_phi) else None


def _projected_grad(x, g, bounds):
    if bounds is None:
        return g
    g = g.copy()
    for i, (lo, _) in enumerate(bounds):
        if lo is not None and x[i] <= lo + 1e-12 and g[i] < 0:  # ascent direction below the bound
            g[i] = 0.0
    return g


def run_nonnormal(design: Design, parameterization: str, constrain: bool, phi, source) -> Estimate:
    """Joint maximization of log f(y, u | β) over (β, u) (MAP with a flat prior on β).

    parameterization "u" maximizes over the latent u as declared in the RandomEffect (with an
    entry "sqrt": McCulloch's Z u^½, density f_u); "w" over w = h(u) (Z w, density f_w). The
    maximization runs over w = h(u) in both cases; only the density differs. constrain: for "u"
    with entry "sqrt", keep u >= 0 (the mode can sit on the boundary u_j = 0); False lets u^½
    range over the real line -- McCulloch's closed-form estimator (his eqs. 6–7, Table 1).
    """
    re = design.spec.re_dist
    if source is not None:
        pv, phi_src = source.re_params, source.phi
    else:
        pv, phi_src = re.values(), None
    phi = _dispersion(design, phi, phi_src)
    p, q = design.p, design.terms[0].nlevels
    if source is not None:
        x0 = np.concatenate([source.beta_hat, source.ranef[design.terms[0].group_name].to_numpy()[:, 0]])
    else:
        mean_b = re.entry_moments(pv)[0]
        beta0 = glm_irls(design.X, design.y, design.wt, design.offset + nn.term_covariate(design) * mean_b,
                         design.family)[0]
        x0 = np.concatenate([beta0, np.full(q, mean_b)])
    bounds = None
    if re.support == "positive" and not (parameterization == "u" and re.entry == "sqrt" and not constrain):
        lb = 0.0 if (parameterization == "u" and re.entry == "sqrt") else 1e-300
        bounds = [(None, None)] * p + [(lb, None)] * q
    nfev = 0

    def f(x):
        nonlocal nfev
        nfev += 1
        v, g = nn.joint_density(design, x[:p], x[p:], parameterization, pv, phi)
        return (-v, -g) if np.isfinite(v) else (1e300, np.zeros_like(x))

    res = optimize.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 20000, "maxfun": 50000, "ftol": 1e-15, "gtol": 1e-11,
                                     "maxcor": 30})
    gnorm = float(np.max(np.abs(_projected_grad(res.x, -f(res.x)[1], bounds))))
    ok = gnorm < 1e-6 * max(1.0, design.n ** 0.5)
    msgs = () if ok else (f"joint maximization: projected gradient {gnorm:.2g} ({res.message})",)
    info = NonNormalJointInfo(parameterization, bool(constrain), -float(res.fun),
                              "exact ML (method='agq')" if source is not None else "known", nfev)
    return Estimate(
        method="joint", estimate_kind="mode", beta=res.x[:p].copy(), vcov_beta=np.full((p, p), np.nan),
        theta=np.zeros(0), phi=phi, u=None, u_condvar=None, ranef=(res.x[p:].reshape(q, 1),),
        ranef_condvar=(np.full((q, 1, 1), np.nan),), re_params=pv, method_converged=ok, messages=msgs,
        details=info,
    )


OPTIONS = (
    Option("theta", "pql", anything, "'pql', 'laplace', or θ values (array or dict by name)"),
    Option("phi", None, optional(number(0.0, open_low=True)), "dispersion (families that have one)"),
    Option("maxit", 200, integer(1), "PIRLS iterations"),
    Option("parameterization", None, optional(choice(*nn.PARAMETERIZATIONS)),
           "non-normal random effects: the mode in u (as declared) or in w = h(u)"),
    Option("constrain", True, boolean, "non-normal, entry sqrt, parameterization u: keep u >= 0"),
)
