"""Non-normal random-effect distributions (McCulloch's normal–exponential model, seed 000).

A scalar random effect of one grouping factor enters the linear predictor as

    eta_i = x_i' beta + z_i * h(u_j),      u_j i.i.d. ~ D(params),

where ``D`` is the distribution of the *latent* variable ``u`` and ``h`` is the *entry* transform
("identity" or "sqrt"). McCulloch's model (3) is ``RandomEffect("exponential", rate=1.0,
entry="sqrt")``; the statistically identical linear-entry form writes ``w = u^½``, which is Rayleigh
with scale ``1/sqrt(2 rate)``: ``RandomEffect("rayleigh", scale=0.5**0.5)`` (entry "identity"), and
`RandomEffect.linear_form()` returns it.

Distributions of u (parameters in brackets; every parameter positive):

=============  =====================  ===============================================================
name           parameters             log density
=============  =====================  ===============================================================
normal         sd                     -log(sd) - log(2 pi)/2 - u^2 / (2 sd^2)            (u real)
exponential    rate                   log(rate) - rate u                                  (u > 0)
gamma          shape, rate            shape log(rate) - lgamma(shape) + (shape-1) log u - rate u
rayleigh       scale                  log u - 2 log(scale) - u^2 / (2 scale^2)
nakagami       m, omega               log 2 + m log(m/omega) - lgamma(m) + (2m-1) log u - m u^2/omega
=============  =====================  ===============================================================

(If u ~ Gamma(shape, rate) then u^½ ~ Nakagami(m = shape, omega = shape / rate); Exponential(rate) =
Gamma(1, rate) and Rayleigh(scale) = Nakagami(1, 2 scale^2).)

A parameter given as a number is *known*; one given as None (or omitted) is *estimated* by the
ML fit (``glmmbayes.fit(spec, data, method="agq")``) and gets a prior in the PyMC model. Joint
maximization takes estimated parameters from the ML fit (jointly maximizing over a scale
parameter and the random effects is degenerate).

The log densities are written against the ``ops`` namespaces of `glmmbayes.families` so the same
formula gives numpy values (quadrature ML, joint maximization) and PyTensor graphs (PyMC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import stats

from .errors import SpecError
from .families import NUMPY

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------- the distribution table


def _normal_logpdf(u, p, ops):
    sd = p["sd"]
    return -ops.log(sd) - 0.5 * _LOG_2PI - 0.5 * u * u / (sd * sd)


def _exponential_logpdf(u, p, ops):
    return ops.log(p["rate"]) - p["rate"] * u


def _gamma_logpdf(u, p, ops):
    k, r = p["shape"], p["rate"]
    return k * ops.log(r) - ops.gammaln(k) + (k - 1.0) * ops.log(u) - r * u


def _rayleigh_logpdf(u, p, ops):
    s = p["scale"]
    return ops.log(u) - 2.0 * ops.log(s) - 0.5 * u * u / (s * s)


def _nakagami_logpdf(u, p, ops):
    m, om = p["m"], p["omega"]
    return (math.log(2.0) + m * (ops.log(m) - ops.log(om)) - ops.gammaln(m)
            + (2.0 * m - 1.0) * ops.log(u) - m * u * u / om)


# d/du log density (numpy; used for the joint-maximization gradient)
def _normal_dlogpdf(u, p):
    return -u / p["sd"] ** 2


def _exponential_dlogpdf(u, p):
    return -p["rate"] + 0.0 * u


def _gamma_dlogpdf(u, p):
    return (p["shape"] - 1.0) / u - p["rate"]


def _rayleigh_dlogpdf(u, p):
    return 1.0 / u - u / p["scale"] ** 2


def _nakagami_dlogpdf(u, p):
    return (2.0 * p["m"] - 1.0) / u - 2.0 * p["m"] * u / p["omega"]


@dataclass(frozen=True)
class _Dist:
    name: str
    params: tuple[str, ...]
    support: str  # "real" or "positive"
    logpdf: object
    dlogpdf: object
    scipy: object  # (params dict) -> frozen scipy.stats distribution (quantiles, simulation)


DISTS: dict[str, _Dist] = {
    "normal": _Dist("normal", ("sd",), "real", _normal_logpdf, _normal_dlogpdf,
                    lambda p: stats.norm(scale=p["sd"])),
    "exponential": _Dist("exponential", ("rate",), "positive", _exponential_logpdf, _exponential_dlogpdf,
                         lambda p: stats.expon(scale=1.0 / p["rate"])),
    "gamma": _Dist("gamma", ("shape", "rate"), "positive", _gamma_logpdf, _gamma_dlogpdf,
                   lambda p: stats.gamma(p["shape"], scale=1.0 / p["rate"])),
    "rayleigh": _Dist("rayleigh", ("scale",), "positive", _rayleigh_logpdf, _rayleigh_dlogpdf,
                      lambda p: stats.rayleigh(scale=p["scale"])),
    "nakagami": _Dist("nakagami", ("m", "omega"), "positive", _nakagami_logpdf, _nakagami_dlogpdf,
                      lambda p: stats.nakagami(p["m"], scale=math.sqrt(p["omega"]))),
}

ENTRIES = ("identity", "sqrt")


@dataclass(frozen=True, init=False)
class RandomEffect:
    """A scalar random effect u_j ~ `dist`(params) entering the linear predictor as h(u_j).

    >>> RandomEffect("exponential", rate=1.0, entry="sqrt")       # McCulloch (3): Z u^½
    >>> RandomEffect("rayleigh", scale=0.5 ** 0.5)                # the same model, (9): Z w
    >>> RandomEffect("gamma", shape=2.0, rate=None, entry="sqrt")  # rate estimated by ML

    Parameters are keyword arguments named as in the table of this module; a number is known,
    None (or omitting it) means estimated.
    """

    dist: str
    entry: str
    params: tuple  # ((name, value or None), ...) in the table's order

    def __init__(self, dist: str, entry: str = "identity", **params):
        if dist not in DISTS:
            raise SpecError(f"unknown random-effect distribution {dist!r}; available: {', '.join(DISTS)}")
        if entry not in ENTRIES:
            raise SpecError(f"random-effect entry must be one of {ENTRIES}, got {entry!r}")
        d = DISTS[dist]
        extra = set(params) - set(d.params)
        if extra:
            raise SpecError(
                f"{dist} random effect has parameters {', '.join(d.params)}; got unknown "
                f"{', '.join(sorted(extra))}"
            )
        if entry == "sqrt" and d.support != "positive":
            raise SpecError(f"entry 'sqrt' needs a positive random effect; {dist} is real-valued")
        vals = []
        for nm in d.params:
            v = params.get(nm)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise SpecError(f"{dist} parameter {nm} must be a positive number or None, got {v!r}") from None
                if not (math.isfinite(v) and v > 0):
                    raise SpecError(f"{dist} parameter {nm} must be positive and finite, got {v!r}")
            vals.append((nm, v))
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "params", tuple(vals))

    # -- parameters -------------------------------------------------------------------
    @property
    def spec(self) -> _Dist:
        """The distribution's definition (density, support, parameters)."""
        return DISTS[self.dist]

    @property
    def support(self) -> str:
        """The support of the random effect u: "real" or "positive"."""
        return self.spec.support

    @property
    def known(self) -> dict[str, float]:
        """The parameters given a value (fixed, not estimated)."""
        return {k: v for k, v in self.params if v is not None}

    @property
    def estimated(self) -> tuple[str, ...]:
        """The names of the parameters left to the fit (given as None)."""
        return tuple(k for k, v in self.params if v is None)

    def values(self, est: Mapping[str, float] | None = None) -> dict:
        """All parameters: the known ones and `est` for the estimated ones."""
        out = {**self.known, **(est or {})}
        missing = [nm for nm in self.estimated if nm not in out]
        if missing:
            raise SpecError(f"{self.dist} parameter(s) {', '.join(missing)} estimated: give values")
        return out

    # -- densities and the entry transform ----------------------------------------------
    def logpdf(self, u, p: Mapping | None = None, ops=NUMPY):
        """log density of the latent u."""
        return self.spec.logpdf(u, self.values(p), ops)

    def dlogpdf(self, u, p: Mapping | None = None):
        """d/du of the log density of u (numpy)."""
        return self.spec.dlogpdf(u, self.values(p))

    def entry_moments(self, p: Mapping | None = None) -> tuple[float, float]:
        """Mean and sd of the random effect as it enters, b = h(u), at parameters `p`."""
        fr = self.frozen(p)
        if self.entry == "sqrt":
            m1 = float(fr.expect(np.sqrt))
            m2 = float(fr.mean())
        else:
            m1, m2 = float(fr.mean()), float(fr.var() + fr.mean() ** 2)
        return m1, math.sqrt(max(m2 - m1 * m1, 0.0))

    def entry_fn(self, u, ops=NUMPY):
        """b = h(u): how u enters the linear predictor."""
        return ops.sqrt(u) if self.entry == "sqrt" else u

    def entry_inv(self, b):
        """u = h⁻¹(b) (numpy)."""
        return b * b if self.entry == "sqrt" else b

    def logpdf_entry(self, b, p: Mapping | None = None, ops=NUMPY):
        """log density of b = h(u) (the linear-entry parameterization): f_u(h⁻¹(b)) |dh⁻¹/db|."""
        if self.entry == "sqrt":
            return self.logpdf(b * b, p, ops) + ops.log(2.0 * b)
        return self.logpdf(b, p, ops)

    def linear_form(self) -> "RandomEffect":
        """The same model with entry "identity": the distribution of w = h(u).

        exponential(rate) + sqrt -> rayleigh(scale = 1/sqrt(2 rate)); gamma(shape, rate) + sqrt
        -> nakagami(m = shape, omega = shape / rate). Estimated parameters stay estimated (the
        ML fit is invariant to this one-to-one change of parameters)."""
        if self.entry == "identity":
            return self
        p = dict(self.params)
        if self.dist == "exponential":
            r = p["rate"]
            return RandomEffect("rayleigh", scale=None if r is None else 1.0 / math.sqrt(2.0 * r))
        if self.dist == "gamma":
            k, r = p["shape"], p["rate"]
            return RandomEffect("nakagami", m=k, omega=None if (k is None or r is None) else k / r)
        raise SpecError(f"no tabled linear form for {self.dist} with entry {self.entry!r}")

    def frozen(self, p: Mapping | None = None):
        """scipy.stats frozen distribution of u (quantiles, simulation)."""
        return self.spec.scipy(self.values(p))

    def simulate(self, rng: np.random.Generator, size, p: Mapping | None = None) -> np.ndarray:
        """Draws of b = h(u) (what enters the linear predictor)."""
        u = self.frozen(p).rvs(size=size, random_state=rng)
        return np.sqrt(u) if self.entry == "sqrt" else u

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={'<estimated>' if v is None else f'{v:g}'}" for k, v in self.params)
        return f"RandomEffect({self.dist!r}, {ps}, entry={self.entry!r})"

    __str__ = __repr__


def as_random_effect(x) -> RandomEffect | None:
    """Validate `Spec.re_dist`: None (normal random effects, the default) or a RandomEffect."""
    if x is None or isinstance(x, RandomEffect):
        return x
    raise SpecError(
        "re_dist must be None (normal random effects) or a glmmbayes.RandomEffect, e.g. "
        f"RandomEffect('exponential', rate=1.0, entry='sqrt'); got {type(x).__name__}"
    )
