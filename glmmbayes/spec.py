"""`Spec`: one frozen, validated GLMM specification that every method compiles from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import SpecError
from .families import Family, get_family
from .formula import ParsedFormula, parse_formula
from .re_dist import as_random_effect

_NA_ACTIONS = ("fail", "omit")


def _check_dispersion(v, fam: Family) -> None:
    if fam.dispersion is None:
        raise SpecError(f"known_dispersion: family {fam.name} has no dispersion parameter; leave it None")
    try:
        ok = math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SpecError(f"known_dispersion must be a positive number (a known φ) or None, got {v!r}")


@dataclass(frozen=True)
class Spec:
    """A GLMM specification: lme4 formula, family and link, plus options.

    Parameters
    ----------
    formula : lme4-style formula, e.g. ``"cbind(incidence, size - incidence) ~ period + (1 | herd)"``.
    family : a family name, case-insensitive: "gaussian", "binomial", "poisson", "Gamma",
        "nbinom2", "nbinom1"; or a `Family`. None (the default): "binomial" for a
        ``cbind(successes, failures)`` response, which no other family takes, and "gaussian"
        otherwise, as R's ``lmer`` and ``glm``.
    link : link name; the family's canonical link when None.
    weights : name of (or R expression over) a data column with prior weights; for a binomial
        proportion response these are the numbers of trials.
    offset : name of (or expression over) a data column added to the linear predictor
        (``offset(log(x))`` inside the formula does the same).
    na_action : "fail" (default: missing values in used columns are an error that names them)
        or "omit" (drop those rows, as R's na.omit, and record how many).
    REML : None (default): REML for the gaussian/identity linear mixed model (as ``lmer``), ML
        for every other model; True: REML -- the exact REML criterion for the LMM; for a GLMM the Laplace approximation with the fixed effects integrated out like
        random effects (glmmTMB's REML = TRUE; method "laplace", and "pql" with a REML working
        model); False: maximum likelihood (``lmer(..., REML = FALSE)``).  `Spec.reml` is the
        resolved choice.  Methods without a REML variant ("hmc"; "agq" for a GLMM) fit the
        likelihood itself under the default, and refuse an explicit ``REML=True``.
    known_dispersion : a known dispersion φ for a family that has one (σ² for gaussian, 1/shape for
        Gamma), e.g. 1.0 for McCulloch's normal–exponential model, whose error variance is
        known; None (default) estimates it.
    priors : prior specification for the Bayesian methods (see `glmmbayes.priors`).
    re_dist : None (normal random effects, the default) or a `glmmbayes.RandomEffect`: a non-normal
        distribution and entry transform for a single scalar random term, fitted by
        `glmmbayes.fit` like any other: method="agq" is the exact ML (per-group quadrature),
        "joint" the joint mode in the parameterization the RandomEffect states, "hmc" the
        posterior.
    """

    formula: str
    family: str | Family | None = None
    link: str | None = None
    weights: str | None = None
    offset: str | None = None
    na_action: str = "fail"
    REML: bool | None = None
    known_dispersion: float | None = None
    priors: Mapping[str, Any] | None = None
    re_dist: Any = None
    parsed: ParsedFormula = field(init=False, repr=False, compare=False)
    fam: Family = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.formula, str):
            raise SpecError(f"formula must be a string, got {type(self.formula).__name__}")
        object.__setattr__(self, "parsed", parse_formula(self.formula))
        if self.family is None:
            object.__setattr__(self, "family", default_family(self.parsed))
        object.__setattr__(self, "fam", get_family(self.family, self.link))
        if self.na_action not in _NA_ACTIONS:
            raise SpecError(f"na_action must be one of {_NA_ACTIONS}, got {self.na_action!r}")
        for name in ("weights", "offset"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise SpecError(
                    f"{name} must name a data column (or an expression over columns), got "
                    f"{type(v).__name__}; add the values to the data frame as a column"
                )
        object.__setattr__(self, "re_dist", as_random_effect(self.re_dist))
        if self.re_dist is not None and len(self.parsed.random) > 1:
            raise SpecError(
                f"a non-normal random effect (re_dist) needs exactly one random term, such as "
                f"(1 | g); the formula has {len(self.parsed.random)}"
            )
        if self.known_dispersion is not None:
            _check_dispersion(self.known_dispersion, self.fam)
            object.__setattr__(self, "known_dispersion", float(self.known_dispersion))
        if self.REML is not None and not isinstance(self.REML, (bool, np.bool_)):
            raise SpecError(f"REML must be True, False or None (REML for the gaussian LMM), got {self.REML!r}")
        if self.REML is not None:
            object.__setattr__(self, "REML", bool(self.REML))
        if self.REML and self.re_dist is not None:
            raise SpecError("REML is defined for normal random effects (the Laplace approximation with "
                            "the fixed effects integrated out); this spec has a non-normal re_dist")
        if not self.parsed.random:
            raise SpecError(
                f"no random-effect term in formula {self.formula!r}; add one such as (1 | group)"
            )

    @property
    def reml(self) -> bool:
        """Whether the model is fitted by REML: `REML` when given; by default (None) True for
        the gaussian/identity LMM with normal random effects and an estimated residual
        variance (lmer's default), False otherwise."""
        if self.REML is not None:
            return self.REML
        return self.fam.is_lmm and self.re_dist is None and self.known_dispersion is None

    @property
    def family_name(self) -> str:
        """The family's name ("gaussian", "binomial", ...)."""
        return self.fam.name

    @property
    def link_name(self) -> str:
        """The link's name ("identity", "logit", ...)."""
        return self.fam.link.name

    def __str__(self) -> str:
        return f"{self.formula}  [{self.fam.name}({self.fam.link.name})]"


def default_family(parsed) -> str:
    """The family of a formula given without one: binomial for a ``cbind()`` response (no other
    family takes two columns), gaussian otherwise (R's ``lmer`` and ``glm``)."""
    return "binomial" if parsed.response.kind == "cbind" else "gaussian"


def as_spec(spec, family=None, link=None, **kw) -> Spec:
    """A Spec from a Spec or a formula string (with family -- see `Spec` for the default --
    link and the other Spec fields as keywords); keywords given beside a ready Spec
    are an error (they belong to the Spec)."""
    if isinstance(spec, Spec):
        given = {k: v for k, v in dict(kw, family=family, link=link).items() if v is not None}
        if given:
            raise SpecError(
                f"{', '.join(sorted(given))} belong{'s' if len(given) == 1 else ''} to the Spec: "
                f"pass them to Spec(...) (or give the formula as a string), not to fit()"
            )
        return spec
    if isinstance(spec, str):
        return Spec(spec, family=family, link=link, **kw)
    raise SpecError(f"spec must be a glmmbayes.Spec or a formula string, got {type(spec).__name__}")
