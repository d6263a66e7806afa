"""`Estimate`: what one method computed, typed — the contract between a method and the `Fit`.

Every method is a function ``design (+ options) -> Estimate``. It states its numbers (fixed
effects with their covariance, variance parameters, conditional modes or means, a log-likelihood
and what kind it is) and its own report (the optimizer's stages, gradient and Hessian, or the
sampler's draws and diagnostics). `glmmbayes.build.build_fit` turns any Estimate into the one
`Fit`: convergence checks, names and timing live there, not in the methods (lme4's `mkMerMod`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

# What a point estimate is (the `estimate_kind` column of `compare`).
ESTIMATE_KINDS = ("ml", "mode", "mean", "pql")

# What `loglik` is: a marginal likelihood by an approximation or exactly, or none at all.
LIKELIHOOD_KINDS = ("laplace", "nagq0", "agq", "exact", "reml", None)


@dataclass(frozen=True)
class StageReport:
    """One optimizer stage: evaluations, iterations and the deviance after each iteration;
    `rows`: where the stage ran on a subsample of whole groups (the start of a large fit), its
    number of rows, else None."""

    nfev: int
    nit: int
    trace: tuple = ()
    rows: int | None = None


@dataclass(frozen=True)
class OptimizerReport:
    """The optimizer's account of an optimum, for the convergence checks of the Fit builder.

    `gradient` and `hessian` are on the deviance scale (-2 log-likelihood) over the parameters
    the optimizer moved; the first `n_checked` of them (θ, then β where they were optimized) are
    checked as lme4's `checkConv` does.
    """

    stages: Mapping[str, StageReport]
    gradient: np.ndarray | None
    hessian: np.ndarray | None
    n_checked: int
    success: bool = True
    message: str = ""
    pirls_failures: int = 0

    @property
    def nfev(self) -> int:
        return int(sum(s.nfev for s in self.stages.values()))


@dataclass(frozen=True)
class Diagnostics:
    """The sampler's convergence numbers (R-hat, ESS, divergences, E-BFMI) and its verdict."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    max_treedepth_hits: int
    bfmi: tuple
    thresholds: Mapping[str, float]
    per_parameter: pd.DataFrame = field(repr=False)
    messages: tuple[str, ...] = ()
    passed: bool = True

    def __getitem__(self, key):  # dict-style access, as ArviZ users index summaries
        return getattr(self, key)


@dataclass(frozen=True)
class MAPEstimate:
    """The posterior mode and the parameterization it was taken in (modes are not invariant)."""

    parameterization: str
    beta: pd.Series | None = None
    point: Mapping[str, Any] | None = field(default=None, repr=False)
    message: str | None = None
    error: str | None = None

    def __getitem__(self, key):
        return getattr(self, key)


@dataclass(frozen=True)
class SamplerReport:
    """What a sampler produced: the draws (ArviZ InferenceData), the posterior summary table,
    the diagnostics, the MAP, the priors and the settings used."""

    idata: Any = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    diagnostics: Diagnostics
    map: MAPEstimate
    priors: Any
    settings: Mapping[str, Any]
    seconds: float = 0.0
    model: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Estimate:
    """What a method computed (see the module docstring).

    beta, vcov_beta: fixed effects and their covariance (SE² or posterior covariance).
    theta: lme4's θ (relative to σ for the gaussian/identity LMM, absolute otherwise); empty
        for a non-normal random effect, whose parameters are `re_params`.
    phi: the family's dispersion (1 where it has none).
    u, u_condvar: spherical conditional modes/means (b = Λ(θ) u) and their per-level
        covariances; None where the random effects are not Λu (non-normal).
    ranef, ranef_condvar: the random effects b per term, (nlevels, k), when they are not Λ(θ)u
        (non-normal random effects, posterior means); None to derive them from u.
    loglik, likelihood: the fully normalized log-likelihood and its kind (`LIKELIHOOD_KINDS`).
    vcov_full, vcov_full_names: covariance of all optimized parameters (θ, β[, log φ]).
    method_converged, messages: the method's own verdict and remarks (PQL's iteration, PIRLS);
        the builder adds the generic gradient/Hessian/boundary checks.
    details: a typed, method-specific record (AGQInfo, PQLInfo, JointInfo, ...).
    """

    method: str
    estimate_kind: str
    beta: np.ndarray
    vcov_beta: np.ndarray
    theta: np.ndarray
    phi: float
    u: np.ndarray | None
    u_condvar: tuple | None
    loglik: float | None = None
    likelihood: str | None = None
    reml_criterion: float | None = None
    nAGQ: int | None = None
    vcov_full: np.ndarray | None = field(default=None, repr=False)
    vcov_full_names: tuple[str, ...] | None = field(default=None, repr=False)
    optimizer: OptimizerReport | None = field(default=None, repr=False)
    sampler: SamplerReport | None = field(default=None, repr=False)
    ranef: tuple | None = field(default=None, repr=False)
    ranef_condvar: tuple | None = field(default=None, repr=False)
    re_params: Mapping[str, float] | None = None
    method_converged: bool = True
    messages: tuple[str, ...] = ()
    details: Any = None

    def __post_init__(self):
        if self.estimate_kind not in ESTIMATE_KINDS:
            raise ValueError(f"estimate_kind must be one of {ESTIMATE_KINDS}, got {self.estimate_kind!r}")
        if self.likelihood not in LIKELIHOOD_KINDS:
            raise ValueError(f"likelihood must be one of {LIKELIHOOD_KINDS}, got {self.likelihood!r}")
        if (self.loglik is None) != (self.likelihood is None):
            raise ValueError("loglik and likelihood go together: both given or both None")
