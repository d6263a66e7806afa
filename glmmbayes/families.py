"""The family table: distributions and links, written once for numpy and for PyTensor (PyMC).

Each formula is written against a small `ops` namespace (exp, log, log1p, gammaln, ...) so the
same code gives the numpy value used by PIRLS, Laplace, AGQ and PQL, and the PyTensor graph used
by the PyMC model: every method fits exactly the same likelihood.

Conventions (as R's `glm` families):
- binomial: ``y`` is the proportion of successes and ``wt`` the number of trials;
- poisson, gaussian, Gamma: ``wt`` are prior weights;
- ``phi`` is the dispersion: 1 for binomial and poisson, sigma^2 for gaussian, 1/shape for Gamma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
from scipy import special

from .errors import DataError, FamilyError

_LOG_2PI = math.log(2.0 * math.pi)
_EPS = np.finfo(float).eps


def _np_log_ndtr(x):
    return special.log_ndtr(x)


NUMPY = SimpleNamespace(
    name="numpy",
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    expm1=np.expm1,
    sqrt=np.sqrt,
    expit=special.expit,
    log_expit=lambda x: -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x)))),
    ndtr=special.ndtr,
    log_ndtr=_np_log_ndtr,
    gammaln=special.gammaln,
    clip=np.clip,
    where=np.where,
)


def pytensor_ops():
    """The same namespace over PyTensor tensors (imported lazily: pymc is needed only for hmc)."""
    import pytensor.tensor as pt

    def ndtr(x):
        return 0.5 * pt.erfc(-x / math.sqrt(2.0))

    def log_ndtr(x):
        # pt.log(ndtr) underflows far in the left tail; erfcx keeps it finite
        return pt.switch(
            x < -5.0,
            pt.log(0.5 * pt.erfcx(-x / math.sqrt(2.0))) - 0.5 * x * x,
            pt.log(ndtr(x)),
        )

    return SimpleNamespace(
        name="pytensor",
        exp=pt.exp,
        log=pt.log,
        log1p=pt.log1p,
        expm1=pt.expm1,
        sqrt=pt.sqrt,
        expit=pt.sigmoid,
        log_expit=lambda x: -pt.softplus(-x),
        ndtr=ndtr,
        log_ndtr=log_ndtr,
        gammaln=pt.gammaln,
        clip=pt.clip,
        where=pt.switch,
    )


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    """A link g: g(mu) = eta, with its inverse, d mu / d eta and stable log mu, log(1 - mu)."""

    name: str
    linkfun: Callable
    linkinv: Callable
    mu_eta: Callable
    dlog_mu_eta: Callable  # d log|mu_eta| / d eta (numpy): the weights' derivatives need it
    log_mu: Callable | None = None  # log(linkinv(eta)), stable, if the link has a closed form
    log1m_mu: Callable | None = None  # log(1 - linkinv(eta)) for links onto (0, 1)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


def _cloglog_log_mu(eta, ops):
    return ops.log(-ops.expm1(-ops.exp(eta)))


LINKS: dict[str, Link] = {
    "logit": Link(
        "logit",
        linkfun=lambda mu, ops=NUMPY: ops.log(mu) - ops.log1p(-mu),
        linkinv=lambda eta, ops=NUMPY: ops.expit(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.expit(eta) * ops.expit(-eta),
        dlog_mu_eta=lambda eta: 1.0 - 2.0 * special.expit(eta),
        log_mu=lambda eta, ops=NUMPY: ops.log_expit(eta),
        log1m_mu=lambda eta, ops=NUMPY: ops.log_expit(-eta),
    ),
    "probit": Link(
        "probit",
        linkfun=lambda mu, ops=NUMPY: special.ndtri(mu),
        linkinv=lambda eta, ops=NUMPY: ops.ndtr(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(-0.5 * eta * eta - 0.5 * _LOG_2PI),
        dlog_mu_eta=lambda eta: -eta,
        log_mu=lambda eta, ops=NUMPY: ops.log_ndtr(eta),
        log1m_mu=lambda eta, ops=NUMPY: ops.log_ndtr(-eta),
    ),
    "cloglog": Link(
        "cloglog",
        linkfun=lambda mu, ops=NUMPY: ops.log(-ops.log1p(-mu)),
        linkinv=lambda eta, ops=NUMPY: -ops.expm1(-ops.exp(eta)),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(eta - ops.exp(eta)),
        dlog_mu_eta=lambda eta: 1.0 - np.exp(eta),
        log_mu=lambda eta, ops=NUMPY: _cloglog_log_mu(eta, ops),
        log1m_mu=lambda eta, ops=NUMPY: -ops.exp(eta),
    ),
    "log": Link(
        "log",
        linkfun=lambda mu, ops=NUMPY: ops.log(mu),
        linkinv=lambda eta, ops=NUMPY: ops.exp(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(eta),
        dlog_mu_eta=lambda eta: np.ones_like(eta),
        log_mu=lambda eta, ops=NUMPY: eta,
    ),
    "identity": Link(
        "identity",
        linkfun=lambda mu, ops=NUMPY: mu,
        linkinv=lambda eta, ops=NUMPY: eta,
        mu_eta=lambda eta, ops=NUMPY: 1.0 + 0.0 * eta,
        dlog_mu_eta=lambda eta: np.zeros_like(eta),
    ),
    "inverse": Link(
        "inverse",
        linkfun=lambda mu, ops=NUMPY: 1.0 / mu,
        linkinv=lambda eta, ops=NUMPY: 1.0 / eta,
        mu_eta=lambda eta, ops=NUMPY: -1.0 / (eta * eta),
        dlog_mu_eta=lambda eta: -2.0 / eta,
        log_mu=lambda eta, ops=NUMPY: -ops.log(eta),
    ),
}


# ------------------------------------------------------------------ distributions


def show_value(v) -> str:
    """A data value as a user would write it (2, 0.5, nan, -inf), not numpy's repr."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return repr(v)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.6g}"


def _row(i: int, rows) -> str:
    """'row k' for position i of the used data; `rows` maps back to positions in the input
    data when rows with missing values were omitted."""
    return f"row {int(rows[i]) if rows is not None else i}"


def _nrows(k: int) -> str:
    return f"{k} row" if k == 1 else f"{k} rows"


def _xlogy_over(y, mu):
    """y * log(y / mu) with 0 log 0 = 0 (numpy only)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _binomial_kernel(y, eta, wt, phi, link, ops):
    k = y * wt
    if link.name == "logit":  # log(1 - mu) = log(mu) - eta: one transcendental pass
        return wt * link.log_mu(eta, ops) - (wt - k) * eta
    return k * link.log_mu(eta, ops) + (wt - k) * link.log1m_mu(eta, ops)


def _binomial_const(y, wt, phi, ops):
    k = y * wt
    return ops.gammaln(wt + 1.0) - ops.gammaln(k + 1.0) - ops.gammaln(wt - k + 1.0)


def _binomial_deviance(y, mu, wt):
    return 2.0 * wt * (_xlogy_over(y, mu) + _xlogy_over(1.0 - y, 1.0 - mu))


def _binomial_validate(y, wt, rows=None):
    bad = ~np.isfinite(y) | (y < 0) | (y > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"binomial response must be 0/1, a proportion in [0, 1] with weights = trials, or "
            f"cbind(successes, failures); {_row(i, rows)} has y = {show_value(y[i])} "
            f"({_nrows(int(bad.sum()))} outside [0, 1])"
        )
    k = y * wt
    nonint = np.abs(k - np.round(k)) > 1e-7 * np.maximum(1.0, wt)
    if nonint.any():
        i = int(np.flatnonzero(nonint)[0])
        hint = (
            "; a proportion response needs weights= naming the column with the numbers of trials"
            if np.all(wt == 1.0) else ""
        )
        raise DataError(
            f"binomial response: successes = y * trials must be whole numbers; {_row(i, rows)} has "
            f"y = {show_value(y[i])} with trials = {show_value(wt[i])} "
            f"({_nrows(int(nonint.sum()))}){hint}"
        )


def _poisson_kernel(y, eta, wt, phi, link, ops):
    log_mu = link.log_mu(eta, ops) if link.log_mu is not None else ops.log(link.linkinv(eta, ops))
    return wt * (y * log_mu - link.linkinv(eta, ops))


def _poisson_const(y, wt, phi, ops):
    return -wt * ops.gammaln(y + 1.0)


def _poisson_deviance(y, mu, wt):
    return 2.0 * wt * (_xlogy_over(y, mu) - (y - mu))


def _poisson_validate(y, wt, rows=None):
    bad = ~np.isfinite(y) | (y < 0) | (np.abs(y - np.round(y)) > 1e-8)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"poisson response must be non-negative whole counts; {_row(i, rows)} has "
            f"y = {show_value(y[i])} ({_nrows(int(bad.sum()))} not counts)"
        )


def _gaussian_kernel(y, eta, wt, phi, link, ops):
    r = y - link.linkinv(eta, ops)
    return -0.5 * wt * r * r / phi


def _gaussian_const(y, wt, phi, ops):
    return 0.5 * (ops.log(wt) - _LOG_2PI - ops.log(phi))


def _gaussian_deviance(y, mu, wt):
    return wt * (y - mu) ** 2


def _gaussian_validate(y, wt, rows=None):
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"gaussian response must be finite; {_row(i, rows)} has y = {show_value(y[i])} "
            f"({_nrows(int(bad.sum()))} not finite)"
        )


def _gamma_kernel(y, eta, wt, phi, link, ops):
    # shape nu = wt / phi, mean mu: density y^(nu-1) exp(-nu y / mu) (nu/mu)^nu / Gamma(nu)
    mu = link.linkinv(eta, ops)
    log_mu = link.log_mu(eta, ops) if link.log_mu is not None else ops.log(mu)
    nu = wt / phi
    return -nu * log_mu - nu * y / mu


def _gamma_const(y, wt, phi, ops):
    nu = wt / phi
    return nu * ops.log(nu) + (nu - 1.0) * ops.log(y) - ops.gammaln(nu)


def _gamma_deviance(y, mu, wt):
    return -2.0 * wt * (np.log(y / mu) - (y - mu) / mu)


def _gamma_validate(y, wt, rows=None):
    bad = ~np.isfinite(y) | (y <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Gamma response must be positive and finite; {_row(i, rows)} has "
            f"y = {show_value(y[i])} ({_nrows(int(bad.sum()))} not positive)"
        )


def _binomial_simulate(rng, mu, wt, phi):
    trials = np.round(wt).astype(int)
    k = rng.binomial(trials, mu)
    return np.where(trials > 0, k / np.maximum(trials, 1), 0.0)


def _poisson_simulate(rng, mu, wt, phi):
    return rng.poisson(mu * np.ones_like(wt)).astype(float)


def _gaussian_simulate(rng, mu, wt, phi):
    return mu + rng.standard_normal(mu.shape) * np.sqrt(phi / wt)


def _gamma_simulate(rng, mu, wt, phi):
    shape = wt / phi
    return rng.gamma(shape, mu / shape)


def _binomial_cumulant_from_exp(t, out):
    """A(η) = log(1 + e^η) into `out`, and μ = e^η / (1 + e^η) into `t`, given t = e^η."""
    np.add(t, 1.0, out=out)
    t /= out
    np.log(out, out=out)


def _poisson_cumulant_from_exp(t, out):
    """A(η) = e^η into `out`; μ = e^η is `t` already."""
    out[...] = t


def _binomial_canonical(y, eta, wt):
    """(kernel, score) for the logit link in one pass: ℓ = kη - wt log(1 + e^η), μ = expit(η)."""
    k = y * wt
    e = np.exp(-np.abs(eta))
    ker = np.log1p(e)
    ker += np.maximum(eta, 0.0)  # softplus(η)
    ker *= -wt
    ker += k * eta
    mu = np.where(eta >= 0.0, 1.0, e)
    mu /= 1.0 + e
    mu *= -wt
    mu += k
    return ker, mu


def _poisson_canonical(y, eta, wt):
    """(kernel, score) for the log link: ℓ = wt (yη - e^η)."""
    k = y * wt
    mu = np.exp(eta)
    ker = k * eta - wt * mu
    mu *= -wt
    mu += k
    return ker, mu


@dataclass(frozen=True)
class Dispersion:
    """A family's dispersion φ and the parameter users see for it (σ = √φ, shape = 1/φ, ...).

    `residual_row`: lme4 reports it as the "Residual" row of VarCorr (variance φ, sd √φ).
    `default_prior`: sd(y) -> (prior name, args, note), the Bayesian methods' default prior on
    the user's parameter (docs/priors.md).
    """

    name: str
    to_param: Callable  # φ -> the user's parameter (numpy or PyTensor)
    from_param: Callable  # the user's parameter -> φ (numpy or PyTensor)
    default_prior: Callable
    residual_row: bool = True


@dataclass(frozen=True)
class CanonicalForm:
    """The canonical-link shortcuts of an exponential family with ℓ = kη - wt A(η) (binomial,
    Poisson): PIRLS weights from one transcendental pass, and the quadrature's factored kernel
    exp(η̂ + c z) = exp(η̂) exp(c z), which leaves only A(η) per row and knot."""

    kernel_and_score: Callable  # (y, eta, wt) -> (kernel, dℓ/dη)
    cumulant_from_exp: Callable  # (t = e^η, out) -> out = A(η), t = μ (in place)


@dataclass(frozen=True)
class Distribution:
    """The conditional distribution of y given the linear predictor: one entry of the table.

    Everything family-specific lives here, so that the numerical core, the quadratures, PQL,
    the PyMC model and `simulate` never branch on a family's name.
    """

    name: str
    links: tuple[str, ...]  # supported links, canonical first
    variance: Callable  # V(mu): the unit variance function (φ-free, as R's family$variance)
    dlog_variance: Callable  # d log V / d mu
    kernel: Callable  # (y, eta, wt, phi, link, ops) -> the part of the log density that depends on eta
    constant: Callable  # (y, wt, phi, ops) -> the rest: kernel + constant = fully normalized log density
    unit_deviance: Callable  # (y, mu, wt) -> per-row deviance (numpy)
    validate: Callable  # (y, wt, rows=None) -> None or DataError naming the row
    mustart: Callable  # (y, wt) -> starting mu
    simulate: Callable  # (rng, mu, wt, phi) -> a response in the design's convention
    mu_bounds: tuple[float, float]
    dispersion: Dispersion | None = None
    canonical: CanonicalForm | None = None  # shortcuts for the canonical link
    binary_response: bool = False  # takes 0/1, proportions with trials, cbind() and factor responses
    saturated_own_link: bool = True  # the saturated density is evaluated through the model's link

    @property
    def has_dispersion(self) -> bool:
        return self.dispersion is not None

    def loglik_eta(self, y, eta, wt, phi, link, ops=NUMPY):
        """Per-row log density of y given eta, fully normalized."""
        return self.kernel(y, eta, wt, phi, link, ops) + self.constant(y, wt, phi, ops)

    @property
    def canonical_link(self) -> str:
        return self.links[0]


_SIGMA = Dispersion("sigma", to_param=lambda phi: phi ** 0.5, from_param=lambda s: s * s,
                    default_prior=lambda sy: ("half_student_t", (3.0, 2.5 * sy), "2.5·sd(y)"))
_SHAPE = Dispersion("shape", to_param=lambda phi: 1.0 / phi, from_param=lambda k: 1.0 / k,
                    default_prior=lambda sy: ("gamma", (0.01, 0.01), "brms default"))

DISTRIBUTIONS: dict[str, Distribution] = {
    "binomial": Distribution(
        "binomial",
        links=("logit", "probit", "cloglog"),
        variance=lambda mu: mu * (1.0 - mu),
        dlog_variance=lambda mu: (1.0 - 2.0 * mu) / (mu * (1.0 - mu)),
        kernel=_binomial_kernel,
        constant=_binomial_const,
        unit_deviance=_binomial_deviance,
        validate=_binomial_validate,
        mustart=lambda y, wt: (wt * y + 0.5) / (wt + 1.0),
        simulate=_binomial_simulate,
        mu_bounds=(_EPS, 1.0 - _EPS),
        canonical=CanonicalForm(_binomial_canonical, _binomial_cumulant_from_exp),
        binary_response=True,
    ),
    "poisson": Distribution(
        "poisson",
        links=("log",),
        variance=lambda mu: mu,
        dlog_variance=lambda mu: 1.0 / mu,
        kernel=_poisson_kernel,
        constant=_poisson_const,
        unit_deviance=_poisson_deviance,
        validate=_poisson_validate,
        mustart=lambda y, wt: y + 0.1,
        simulate=_poisson_simulate,
        mu_bounds=(_EPS, np.inf),
        canonical=CanonicalForm(_poisson_canonical, _poisson_cumulant_from_exp),
    ),
    "gaussian": Distribution(
        "gaussian",
        links=("identity", "log", "inverse"),
        variance=lambda mu: np.ones_like(mu),
        dlog_variance=lambda mu: np.zeros_like(mu),
        kernel=_gaussian_kernel,
        constant=_gaussian_const,
        unit_deviance=_gaussian_deviance,
        validate=_gaussian_validate,
        mustart=lambda y, wt: y,
        simulate=_gaussian_simulate,
        mu_bounds=(-np.inf, np.inf),
        dispersion=_SIGMA,
        saturated_own_link=False,
    ),
    "Gamma": Distribution(
        "Gamma",
        links=("inverse", "log", "identity"),
        variance=lambda mu: mu * mu,
        dlog_variance=lambda mu: 2.0 / mu,
        kernel=_gamma_kernel,
        constant=_gamma_const,
        unit_deviance=_gamma_deviance,
        validate=_gamma_validate,
        mustart=lambda y, wt: y,
        simulate=_gamma_simulate,
        mu_bounds=(_EPS, np.inf),
        dispersion=_SHAPE,
        saturated_own_link=False,
    ),
}

_ALIASES = {"gamma": "Gamma", "normal": "gaussian", "bernoulli": "binomial"}


@dataclass(frozen=True)
class Family:
    """A distribution with a link: everything PIRLS, the objectives and PyMC need."""

    dist: Distribution
    link: Link

    @property
    def name(self) -> str:
        return self.dist.name

    @property
    def is_canonical(self) -> bool:
        return self.link.name == self.dist.canonical_link

    @property
    def has_dispersion(self) -> bool:
        return self.dist.has_dispersion

    @property
    def dispersion(self) -> Dispersion | None:
        return self.dist.dispersion

    @property
    def is_lmm(self) -> bool:
        """Gaussian with identity link: the linear mixed model, fitted exactly."""
        return self.dist.name == "gaussian" and self.link.name == "identity"

    def re_scale(self, phi: float) -> float:
        """The factor between Λ(θ)Λ(θ)' and the random effects' covariance: lme4's LMM θ is
        relative to the residual σ (the factor is φ = σ²); a GLMM's is absolute (1)."""
        return phi if self.is_lmm else 1.0

    @property
    def fast_canonical(self) -> CanonicalForm | None:
        """The canonical-link shortcuts when this family uses its canonical link."""
        return self.dist.canonical if self.is_canonical else None

    def linkinv(self, eta, ops=NUMPY):
        mu = self.link.linkinv(eta, ops)
        if ops is NUMPY:
            lo, hi = self.dist.mu_bounds
            if np.isfinite(lo) or np.isfinite(hi):
                mu = np.clip(mu, lo, hi)
        return mu

    def mu_eta(self, eta, ops=NUMPY):
        d = self.link.mu_eta(eta, ops)
        if ops is NUMPY:
            d = np.maximum(np.abs(d), _EPS) * np.where(d < 0, -1.0, 1.0)
        return d

    def linkfun(self, mu, ops=NUMPY):
        return self.link.linkfun(mu, ops)

    def variance(self, mu):
        return self.dist.variance(mu)

    def loglik(self, y, eta, wt, phi=1.0, ops=NUMPY):
        """Per-row log density of y given eta, fully normalized (the saturated constant included)."""
        return self.dist.loglik_eta(y, eta, wt, phi, self.link, ops)

    def unit_deviance(self, y, mu, wt):
        return self.dist.unit_deviance(y, mu, wt)

    def saturated_loglik(self, y, wt, phi=1.0):
        """Log density at mu = y: lme4's nAGQ>1 logLik omits its sum for binomial data."""
        mu = np.clip(y, *self.dist.mu_bounds)
        # the saturated density does not depend on the link; gaussian/Gamma go through the
        # identity link so that y outside the link's range (log link, y <= 0) stays finite
        link = self.link if self.dist.saturated_own_link else LINKS["identity"]
        with np.errstate(divide="ignore"):
            eta = link.linkfun(mu)
        return self.dist.loglik_eta(y, eta, wt, phi, link, NUMPY)

    def loglik_kernel(self, y, eta, wt, phi=1.0, ops=NUMPY):
        """The eta-dependent part of the log density (what PIRLS needs, cheaper than loglik)."""
        return self.dist.kernel(y, eta, wt, phi, self.link, ops)

    def loglik_constant(self, y, wt, phi=1.0, ops=NUMPY):
        """The eta-free part of the log density, per row (summed once per fit, not per step)."""
        return self.dist.constant(y, wt, phi, ops)

    def score(self, y, eta, wt, phi=1.0):
        """dℓ/dη per row: wt (y - μ) μ'(η) / (φ V(μ)) (numpy)."""
        w, mu, d = self.working_weights(eta, wt, phi)
        return w * (y - mu) / d

    def kernel_and_score(self, y, eta, wt, phi=1.0):
        """(loglik_kernel, dℓ/dη) in one pass (numpy).

        The quadrature evaluates both at rows x knots, so the canonical binomial and Poisson
        cases share their one exponential between the two.
        """
        fast = self.fast_canonical
        if fast is not None:
            return fast.kernel_and_score(y, eta, wt)
        w, mu, d = self.working_weights(eta, wt, phi)
        return self.loglik_kernel(y, eta, wt, phi), w * (y - mu) / d

    def working_weights(self, eta, wt, phi=1.0):
        """IRLS weights wt * mu_eta^2 / (phi V(mu)) (Fisher scoring, as lme4); also mu and mu_eta."""
        mu = self.linkinv(eta)
        if self.fast_canonical is not None:
            # canonical link: mu_eta = V(mu), so one transcendental pass gives everything
            d = np.maximum(self.variance(mu), _EPS)
            return wt * d / phi, mu, d
        d = self.mu_eta(eta)
        return wt * d * d / (phi * self.variance(mu)), mu, d

    def dweights(self, eta, wt, phi=1.0):
        """dW/dη of the working weights W = wt μ'(η)² / (φ V(μ)) (analytic):
        W (2 d log|μ'|/dη - μ'(η) d log V/dμ)."""
        w, mu, d = self.working_weights(eta, wt, phi)
        return w * (2.0 * self.link.dlog_mu_eta(eta) - d * self.dist.dlog_variance(mu))

    def validate(self, y, wt, rows=None):
        """DataError naming the first row whose y lies outside the family's support (`rows`:
        positions in the input data of the rows used, to report after na_action="omit")."""
        self.dist.validate(np.asarray(y, float), np.asarray(wt, float), rows=rows)

    def mustart(self, y, wt):
        return self.dist.mustart(y, wt)

    def simulate(self, rng: np.random.Generator, eta, wt, phi=1.0):
        """A response drawn at η, in the design's convention (proportions for binomial)."""
        return self.dist.simulate(rng, self.linkinv(eta), wt, phi)

    def __repr__(self) -> str:
        return f"Family({self.dist.name!r}, link={self.link.name!r})"


def get_family(family: str | Family = "binomial", link: str | None = None) -> Family:
    """Look up a family by name (case-insensitive), with its canonical link unless one is given."""
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            return get_family(family.dist.name, link)
        return family
    if not isinstance(family, str):
        raise FamilyError(f"family must be a name such as 'binomial', got {family!r}")
    by_lower = {k.lower(): k for k in DISTRIBUTIONS}
    key = _ALIASES.get(family.lower(), by_lower.get(family.lower(), family))
    if key not in DISTRIBUTIONS:
        raise FamilyError(
            f"unknown family {family!r}; available: {', '.join(DISTRIBUTIONS)}"
        )
    dist = DISTRIBUTIONS[key]
    if link is not None and not isinstance(link, str):
        raise FamilyError(f"link must be a name such as 'logit', got {link!r}")
    link = dist.canonical_link if link is None else link
    if link not in LINKS:
        low = {k.lower(): k for k in LINKS}
        link = low.get(link.lower(), link)
    if link not in LINKS:
        raise FamilyError(f"unknown link {link!r}; available: {', '.join(LINKS)}")
    if link not in dist.links:
        raise FamilyError(
            f"link {link!r} is not supported for family {key!r}; supported: {', '.join(dist.links)}"
        )
    return Family(dist, LINKS[link])
