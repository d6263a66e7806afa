"""method="laplace": maximum likelihood with the Laplace approximation (nAGQ = 1), lme4's fast
nAGQ = 0 criterion, or the GLMM REML criterion (`Spec(REML=True)`). (The method table sends the
gaussian/identity LMM to `methods.lmm`, and nAGQ > 1 to `methods.agq`, as lme4's glmer does.)

Which Laplace: the log-determinant of the Hessian of the joint log-density in u at the mode. With
``laplace="observed"`` (default) that is the observed information -- the Laplace approximation
proper, glmmTMB's; with ``laplace="expected"`` the Fisher (expected) information, which lme4's
glmer uses. They coincide for canonical links (logit, log-Poisson, ...) and differ otherwise
(probit, cloglog, NB2's log link, Gamma and gaussian with a log link).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import objective as ob
from ..core.agq import agq_scalar_gradient
from ..core.nested import nested_gradient, nesting
from ..core.quadrature import gauss_hermite
from ..design import Design
from ..errors import SpecError
from ..estimate import Estimate
from ..families import HESSIANS
from .ml import fit_ml, ml_estimate
from .options import Option, choice, integer


@dataclass(frozen=True)
class LaplaceInfo:
    """Which Laplace approximation ran: the information in its Hessian and the criterion."""

    hessian: str  # "observed" (the Laplace approximation proper) or "expected" (lme4's)
    criterion: str  # "laplace", "nagq0" or "reml"
    canonical_link: bool  # observed and expected information coincide
    adequacy: "AdequacyCheck | None" = None  # the automatic check against quadrature

    def describe(self) -> str:
        if self.canonical_link:
            return "canonical link: observed = expected information"
        return ("observed information (the Laplace approximation proper, as glmmTMB)" if self.hessian == "observed"
                else "expected (Fisher) information, as lme4's glmer")


class LaplaceObjective:
    """The Laplace deviance, with its analytic θ/β-gradient where it is exact (observed
    information, or a canonical link)."""

    def __init__(self, hessian: str = "observed"):
        self.hessian = hessian

    def __call__(self, prob, theta, beta, warm, phi):
        return ob.laplace(prob, theta, beta, warm, phi, self.hessian)

    supports_logphi = True  # value_and_grad can add the gradient in log φ

    def value_and_grad(self, prob, theta, beta, warm, phi, logphi: bool = False):
        st = warm.solve(prob, theta, beta, phi=phi, hessian=self.hessian)
        if not np.isfinite(st.pdev):
            return (np.inf, None, None, None) if logphi else (np.inf, None, None)
        return (ob.laplace_value(prob, st, phi), *ob.laplace_gradient(prob, st, phi, logphi=logphi, warm=warm))


@dataclass(frozen=True)
class AdequacyCheck:
    """Laplace against adaptive quadrature at the Laplace estimate (same θ, β): the cheap check
    every Laplace fit of a binomial or Poisson model with integrable random effects gets.

    `shift` is the predicted improvement of the AGQ deviance by one Newton step from the Laplace
    estimate, ½ g'H⁻¹g (g the AGQ deviance gradient there, H the Laplace deviance Hessian): the
    squared distance, in standard errors, that the estimates would move under quadrature. A large
    log-likelihood difference alone is no reason for concern (a big data set sums thousands of
    tiny per-cluster differences); a shift of half a standard error is."""

    nAGQ: int
    loglik_laplace: float
    loglik_agq: float
    nested: bool
    shift: float | None = None  # None where the AGQ gradient is not available (non-canonical links)

    @property
    def difference(self) -> float:
        return self.loglik_agq - self.loglik_laplace

    @property
    def adequate(self) -> bool:
        if self.shift is not None:
            return self.shift < SHIFT_TOL
        return abs(self.difference) < ADEQUACY_TOL


SHIFT_TOL = 0.25  # ½ g'H⁻¹g: the estimates would move by half a standard error
ADEQUACY_TOL = 1.0  # without a gradient: log-likelihood units (a change of 2 in an LRT statistic)
ADEQUACY_KNOTS = 9  # per dimension (5 per level for nested terms: 25 knot pairs)


def adequacy_check(design: Design, res) -> AdequacyCheck | None:
    """Quadrature at the Laplace optimum for binomial and Poisson models with one scalar term or
    two nested ones (where the integral factors); None elsewhere (the LMM is exact; crossed terms
    have no cheap quadrature)."""
    # the families with no dispersion and a canonical-form kernel (binomial, Poisson): the
    # quadrature's cheap path, and no φ to hold fixed at the Laplace value
    if design.family.dist.canonical is None or res.state.factor is None:
        return None
    prob = design.problem()
    nest = nesting(design)
    if nest is not None:
        ll, gt, gb = nested_gradient(prob, res.state, nest[0], gauss_hermite(5), res.phi)
        grad = None if gt is None else -2.0 * np.concatenate([gt, gb])
        k, nested = 5, True
    elif len(design.terms) == 1 and design.terms[0].k == 1:
        dev, gt, gb = agq_scalar_gradient(prob, res.state, gauss_hermite(ADEQUACY_KNOTS), res.phi)
        ll, grad = -0.5 * dev, None if gt is None else np.concatenate([gt, gb])
        k, nested = ADEQUACY_KNOTS, False
    else:
        return None
    if not np.isfinite(ll):
        return None
    return AdequacyCheck(k, -0.5 * res.deviance, float(ll), nested, _newton_shift(grad, res))


def _newton_shift(grad, res) -> float | None:
    H = None if res.stage2 is None else res.stage2.hessian
    if grad is None or H is None:
        return None
    try:
        return float(0.5 * grad @ np.linalg.solve(H[: len(grad), : len(grad)], grad))
    except np.linalg.LinAlgError:
        return None


def adequacy_message(check: AdequacyCheck | None) -> tuple[str, ...]:
    if check is None or check.adequate:
        return ()
    kind = "nested adaptive quadrature" if check.nested else "adaptive quadrature"
    moves = ("" if check.shift is None else
             f"; the estimates would move by about {check.shift ** 0.5:.2g} standard errors")
    return (f"the Laplace approximation may be inaccurate here: {kind} with {check.nAGQ} knots "
            f"at the Laplace estimate changes the log-likelihood by {check.difference:+.3g} "
            f"({check.loglik_laplace:.3f} -> {check.loglik_agq:.3f}){moves}; refit with method='agq' "
            "(fit.laplace_adequacy() shows which clusters and which nAGQ)",)


def run(design: Design, *, nAGQ: int = 1, laplace: str = "observed") -> Estimate:
    """Laplace ML (nAGQ = 1), the nAGQ = 0 criterion (θ by Laplace, β from PIRLS), or REML."""
    if laplace == "expected" and not design.family.dist.expected_information:
        raise SpecError(f"family {design.family.name} has no closed-form expected information "
                        "(it is not an exponential family): use laplace='observed'")
    if design.spec.reml:
        if nAGQ != 1:
            raise SpecError("REML integrates the fixed effects out by the Laplace approximation: "
                            "it is defined for nAGQ = 1 only")
        res = fit_ml(design, None, hessian=laplace, reml=True)
        return ml_estimate(design, res, method="laplace", nAGQ=1, likelihood="reml",
                           details=LaplaceInfo(laplace, "reml", design.family.is_canonical))
    res = fit_ml(design, LaplaceObjective(laplace), fast_only=(nAGQ == 0), hessian=laplace)
    kind = "nagq0" if nAGQ == 0 else "laplace"
    check = adequacy_check(design, res) if nAGQ == 1 else None
    est = ml_estimate(design, res, method=kind, nAGQ=nAGQ, likelihood=kind,
                      details=LaplaceInfo(laplace, kind, design.family.is_canonical, check))
    return dataclasses.replace(est, messages=est.messages + adequacy_message(check))


OPTIONS = (
    Option("nAGQ", 1, integer(0), "0: lme4's fast criterion; 1: Laplace; > 1: adaptive quadrature"),
    Option("laplace", "observed", choice(*HESSIANS),
           "the Hessian of the Laplace approximation: observed information (glmmTMB) or expected (lme4)"),
)


def deviance_objective(design: Design, *, nAGQ: int = 1, laplace: str = "observed"):
    """The deviance in (θ, β[, φ]) that a Laplace fit maximizes (for profiles)."""
    if design.spec.reml or nAGQ == 0:
        raise SpecError("profiles need the (θ, β) deviance of a Laplace (nAGQ = 1) or AGQ fit; "
                        "REML and nAGQ = 0 fits have none (refit with nAGQ = 1, REML = False)")
    return LaplaceObjective(laplace)
