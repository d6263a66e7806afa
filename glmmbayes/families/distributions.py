"""The distribution table: one entry per conditional distribution of y given the linear predictor.

Conventions (as R's `glm` families): binomial ``y`` is the proportion of successes and ``wt`` the
number of trials; otherwise ``wt`` are prior weights. ``phi`` is the dispersion: 1 for binomial
and Poisson, σ² for gaussian, 1/shape for Gamma, θ (the size) for the NB2 negative binomial
(Var y = μ + μ²/θ), φ for NB1 (Var y = μ(1 + φ)).

Everything family-specific lives in an entry, so that the numerical core, the quadratures, PQL,
the PyMC model and `simulate` never branch on a family's name. Exponential families (binomial,
Poisson, gaussian, Gamma, NB2 with θ fixed) are described by their variance function, from which
the score and the observed information follow; NB1 is not one and gives its μ-derivatives of the
log-density directly (`mu_derivs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special

from ..errors import DataError
from .ops import NUMPY, count_terms

_LOG_2PI = math.log(2.0 * math.pi)
_EPS = np.finfo(float).eps




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
    if ops is NUMPY and isinstance(wt, np.ndarray) and np.all(wt == 1.0):
        return np.zeros(np.shape(y))  # log C(1, y) = 0 for y in {0, 1} (validated): no lgamma passes
    k = y * wt
    return ops.gammaln(wt + 1.0) - ops.gammaln(k + 1.0) - ops.gammaln(wt - k + 1.0)


def _binomial_deviance(y, mu, wt, phi=1.0):
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


def _poisson_deviance(y, mu, wt, phi=1.0):
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


def _gaussian_deviance(y, mu, wt, phi=1.0):
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


def _gamma_deviance(y, mu, wt, phi=1.0):
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
    _binomial_mean_from_exp(t, out)
    np.log(out, out=out)


def _binomial_mean_from_exp(t, work):
    """μ = e^η / (1 + e^η) into `t`, given t = e^η; `work` is left holding 1 + e^η = e^A(η), so
    that A summed over rows is the log of a product (one logarithm per sum, not per row)."""
    np.add(t, 1.0, out=work)
    t /= work


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


# ----------------------------------------------------------------- negative binomial


def _nb2_kernel(y, eta, wt, theta, link, ops):
    # log p = lgamma(y+θ) - lgamma(θ) - lgamma(y+1) - y log(1 + θ/μ) - θ log(1 + μ/θ), each
    # log(1 + e^x) in its stable form: θ log θ - θ log(μ+θ) lost every digit near the Poisson
    # limit (θ = 1e13: two terms of 4e14 for a difference of about μ)
    log_mu = link.log_mu(eta, ops) if link.log_mu is not None else ops.log(link.linkinv(eta, ops))
    log_theta = ops.log(theta)
    return -wt * (y * ops.log1pexp(log_theta - log_mu) + theta * ops.log1pexp(log_mu - log_theta))


def _nb2_const(y, wt, theta, ops):
    return wt * (ops.lgamma_ratio(y, theta) - ops.gammaln(y + 1.0))


def _nb2_deviance(y, mu, wt, theta=1.0):
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * wt * (_xlogy_over(y, mu) - (y + theta) * np.log1p((y - mu) / (mu + theta)))


def _nb2_simulate(rng, mu, wt, theta):
    return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)


def _nb2_start(y, mu, wt, df):
    """θ by the method of moments from Poisson-fitted means (Var y = μ + μ²/θ); large when the
    data show no overdispersion."""
    excess = float(np.sum(wt * ((y - mu) ** 2 - mu)))
    return float(np.clip(np.sum(wt * mu * mu) / excess, 0.01, 1e4)) if excess > 0 else 1e4


def _nb1_kernel(y, eta, wt, phi, link, ops):
    # log p = lgamma(y + μ/φ) - lgamma(μ/φ) - lgamma(y+1) - (μ/φ) log(1+φ) + y log(φ/(1+φ))
    k = link.linkinv(eta, ops) / phi
    return wt * (ops.lgamma_ratio(y, k) - k * ops.log1p(phi))


def _nb1_const(y, wt, phi, ops):
    return wt * (y * (ops.log(phi) - ops.log1p(phi)) - ops.gammaln(y + 1.0))


def _nb1_mu_derivs(y, mu, wt, phi):
    """(dℓ/dμ, d²ℓ/dμ², d³ℓ/dμ³) of the NB1 log-density (digamma, trigamma, tetragamma)."""
    k = mu / phi
    s1, s2, s3 = _polygamma_steps(y, k)
    d1 = (s1 - math.log1p(phi)) / phi
    # successive divisions: phi**3 overflows (OverflowError) for a far-out line-search trial
    return wt * d1, wt * s2 / phi / phi, wt * s3 / phi / phi / phi


def _polygamma_steps(y, k):
    """ψ⁽ⁿ⁾(y + k) − ψ⁽ⁿ⁾(k) for n = 0, 1, 2. For integer counts as the finite sums of the
    recurrence ψ⁽ⁿ⁾(x + 1) = ψ⁽ⁿ⁾(x) + (−1)ⁿ n!/xⁿ⁺¹ over j < y, all rows' terms in one flat
    array (`ops.count_terms`: exact, and ten times faster than polygamma, which the Laplace
    gradient would call a dozen times per evaluation); otherwise by polygamma."""
    terms = count_terms(y, k)
    if terms is not None:
        row, kj, size, shape = terms
        inv = 1.0 / kj
        inv2 = inv * inv
        return (np.bincount(row, inv, size).reshape(shape), -np.bincount(row, inv2, size).reshape(shape),
                2.0 * np.bincount(row, inv2 * inv, size).reshape(shape))
    return (special.digamma(y + k) - special.digamma(k),
            special.polygamma(1, y + k) - special.polygamma(1, k),
            special.polygamma(2, y + k) - special.polygamma(2, k))


def _nb1_mu_part(y, k, phi):
    """The μ-dependent part of the NB1 log-density at k = μ/φ (0 in the limit k -> 0 at y = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, NUMPY.lgamma_ratio(y, k), 0.0) - k * math.log1p(phi)


def _nb1_saturated_k(y, phi, iters: int = 44):
    """k = μ/φ maximizing the NB1 log-density of each y > 0: ψ(y + k) - ψ(k) = log(1 + φ), whose
    left side falls from ∞ to 0 in k (bisection on log k). NB1 is not an exponential family, so
    the saturated mean is not y. The density is stationary there, so the error of log k after
    44 halvings of [-40, 40] (5e-12) moves the saturated log-density by O(1e-23)."""
    target = math.log1p(phi)
    lo, hi = np.full(y.shape, -40.0), np.full(y.shape, 40.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        k = np.exp(mid)
        high = special.digamma(y + k) - special.digamma(k) > target
        lo, hi = np.where(high, mid, lo), np.where(high, hi, mid)
    return np.exp(0.5 * (lo + hi))


def _nb1_saturated(y, wt, phi):
    """The NB1 log-density maximized over μ per row (the saturated model)."""
    k = np.where(y > 0, _nb1_saturated_k(y, phi), 0.0)
    return wt * (_nb1_mu_part(y, k, phi) + y * (math.log(phi) - math.log1p(phi)) - special.gammaln(y + 1.0))


def _nb1_deviance(y, mu, wt, phi=1.0):
    """2 (ℓ_saturated - ℓ(μ)) per row, the saturated model maximizing over μ (not μ = y)."""
    k = np.where(y > 0, _nb1_saturated_k(y, phi), 0.0)
    return 2.0 * wt * (_nb1_mu_part(y, k, phi) - _nb1_mu_part(y, mu / phi, phi))


def _nb1_simulate(rng, mu, wt, phi):
    return rng.negative_binomial(mu / phi, 1.0 / (1.0 + phi)).astype(float)


def _nb1_start(y, mu, wt, df):
    """φ from the Pearson statistic of the Poisson fit: Var y = μ(1 + φ)."""
    pearson = float(np.sum(wt * (y - mu) ** 2 / mu)) / max(df, 1)
    return max(pearson - 1.0, 0.05)


def _pearson_start(variance):
    def start(y, mu, wt, df):
        return max(float(np.sum(wt * (y - mu) ** 2 / variance(mu))) / max(df, 1), 1e-8)

    return start


@dataclass(frozen=True)
class Dispersion:
    """A family's dispersion φ and the parameter users see for it (σ = √φ, shape = 1/φ, θ, φ).

    `residual_row`: lme4 reports it as the "Residual" row of VarCorr (variance φ, sd √φ).
    `default_prior`: sd(y) -> (prior name, args, note), the Bayesian methods' default prior on
    the user's parameter (docs/priors.md). `start`: (y, μ of the GLM fit, wt, df) -> φ to start
    the optimizer at. `names`: what lme4 and glmmTMB call it.
    """

    name: str
    to_param: Callable  # φ -> the user's parameter (numpy or PyTensor)
    from_param: Callable  # the user's parameter -> φ (numpy or PyTensor)
    default_prior: Callable
    start: Callable
    residual_row: bool = True
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class CanonicalForm:
    """The canonical-link shortcuts of an exponential family with ℓ = kη - wt A(η) (binomial,
    Poisson): PIRLS weights from one transcendental pass, and the quadrature's factored kernel
    exp(η̂ + c z) = exp(η̂) exp(c z), which leaves only A(η) per row and knot."""

    kernel_and_score: Callable  # (y, eta, wt) -> (kernel, dℓ/dη)
    cumulant_from_exp: Callable  # (t = e^η, out) -> out = A(η), t = μ (in place)
    dvariance: Callable  # mu -> V'(μ): the weights W = wt V(μ) have dW/dη = W V'(μ) (μ' = V)
    mean_from_exp: Callable  # (t = e^η, work) -> t = μ (in place), work scratch
    leaves_exp_cumulant: bool = False  # mean_from_exp leaves e^A(η) in `work` (binomial: 1 + e^η)


@dataclass(frozen=True)
class Distribution:
    """The conditional distribution of y given the linear predictor: one entry of the table."""

    name: str
    links: tuple[str, ...]  # supported links, the default first
    variance: Callable  # (mu, phi) -> the unit variance function (R's family$variance)
    var_y: Callable  # (mu, phi) -> Var(y) per unit prior weight: Fisher weights wt μ'² / var_y
    dlog_var: Callable  # (mu, phi) -> d log var_y / dμ
    d2log_var: Callable  # (mu, phi) -> d² log var_y / dμ²
    kernel: Callable  # (y, eta, wt, phi, link, ops) -> the part of the log density that depends on eta
    constant: Callable  # (y, wt, phi, ops) -> the rest: kernel + constant = fully normalized log density
    unit_deviance: Callable  # (y, mu, wt, phi) -> per-row deviance (numpy)
    validate: Callable  # (y, wt, rows=None) -> None or DataError naming the row
    mustart: Callable  # (y, wt) -> starting mu
    simulate: Callable  # (rng, mu, wt, phi) -> a response in the design's convention
    mu_bounds: tuple[float, float]
    canonical_link: str | None = None  # the exponential family's canonical link, if it has one
    dispersion: Dispersion | None = None
    canonical: CanonicalForm | None = None  # shortcuts for the canonical link
    binary_response: bool = False  # takes 0/1, proportions with trials, cbind() and factor responses
    saturated_own_link: bool = True  # the saturated density is evaluated through the model's link
    mu_derivs: Callable | None = None  # not an exponential family: (y, mu, wt, phi) -> dℓ/dμ, d²ℓ/dμ², d³ℓ/dμ³
    saturated: Callable | None = None  # (y, wt, phi) -> max over μ of the log-density, where μ = y is not it
    expected_information: bool = True  # Fisher weights are the expected information (lme4's Laplace)
    scale_family: bool = False  # ℓ's η-dependent part is divided by φ (an exponential dispersion family)

    @property
    def has_dispersion(self) -> bool:
        return self.dispersion is not None

    def loglik_eta(self, y, eta, wt, phi, link, ops=NUMPY):
        """Per-row log density of y given eta, fully normalized."""
        return self.kernel(y, eta, wt, phi, link, ops) + self.constant(y, wt, phi, ops)

    def derivatives(self, y, mu, wt, phi):
        """(dℓ/dμ, d²ℓ/dμ², d³ℓ/dμ³) per row. For an exponential family with v = var_y and
        b = d log v / dμ: wt (y-μ)/v, -(wt/v)(1 + (y-μ) b), (wt/v)(2b + (y-μ)(b² - b'))."""
        if self.mu_derivs is not None:
            return self.mu_derivs(y, mu, wt, phi)
        c = wt / self.var_y(mu, phi)
        r = y - mu
        b = self.dlog_var(mu, phi)
        return c * r, -c * (1.0 + r * b), c * (2.0 * b + r * (b * b - self.d2log_var(mu, phi)))


def _unit_phi(V):
    """var_y for a family whose dispersion scales its variance function: φ V(μ)."""
    return lambda mu, phi: phi * V(mu)


def _no_phi(V):
    return lambda mu, phi: V(mu)


_SIGMA = Dispersion("sigma", to_param=lambda phi: phi ** 0.5, from_param=lambda s: s * s,
                    default_prior=lambda sy: ("half_student_t", (3.0, 2.5 * sy), "2.5·sd(y)"),
                    start=_pearson_start(lambda mu: np.ones_like(mu)), names=("sigma",))
_SHAPE = Dispersion("shape", to_param=lambda phi: 1.0 / phi, from_param=lambda k: 1.0 / k,
                    default_prior=lambda sy: ("gamma", (0.01, 0.01), "brms default"),
                    start=_pearson_start(lambda mu: mu * mu), names=("shape",))
_NB_THETA = Dispersion("theta", to_param=lambda phi: phi, from_param=lambda t: t,
                       default_prior=lambda sy: ("gamma", (0.01, 0.01), "brms default for the NB shape"),
                       start=_nb2_start, residual_row=False,
                       names=("theta (glmer.nb: getME(m, 'glmer.nb.theta'))", "sigma (glmmTMB nbinom2)"))
_NB_PHI = Dispersion("phi", to_param=lambda phi: phi, from_param=lambda p: p,
                     default_prior=lambda sy: ("half_student_t", (3.0, 2.5), "weakly informative"),
                     start=_nb1_start, residual_row=False, names=("sigma (glmmTMB nbinom1)",))

_binomial_V = lambda mu: mu * (1.0 - mu)  # noqa: E731

DISTRIBUTIONS: dict[str, Distribution] = {
    "binomial": Distribution(
        "binomial", links=("logit", "probit", "cloglog"), canonical_link="logit",
        variance=_no_phi(_binomial_V), var_y=_no_phi(_binomial_V),
        dlog_var=lambda mu, phi: (1.0 - 2.0 * mu) / (mu * (1.0 - mu)),
        d2log_var=lambda mu, phi: -(1.0 - 2.0 * mu * (1.0 - mu)) / (mu * (1.0 - mu)) ** 2,
        kernel=_binomial_kernel, constant=_binomial_const, unit_deviance=_binomial_deviance,
        validate=_binomial_validate, mustart=lambda y, wt: (wt * y + 0.5) / (wt + 1.0),
        simulate=_binomial_simulate, mu_bounds=(_EPS, 1.0 - _EPS),
        canonical=CanonicalForm(_binomial_canonical, _binomial_cumulant_from_exp, lambda mu: 1.0 - 2.0 * mu,
                                _binomial_mean_from_exp, leaves_exp_cumulant=True), binary_response=True,
    ),
    "poisson": Distribution(
        "poisson", links=("log",), canonical_link="log",
        variance=_no_phi(lambda mu: mu), var_y=_no_phi(lambda mu: mu),
        dlog_var=lambda mu, phi: 1.0 / mu, d2log_var=lambda mu, phi: -1.0 / (mu * mu),
        kernel=_poisson_kernel, constant=_poisson_const, unit_deviance=_poisson_deviance,
        validate=_poisson_validate, mustart=lambda y, wt: y + 0.1, simulate=_poisson_simulate,
        mu_bounds=(_EPS, np.inf), canonical=CanonicalForm(_poisson_canonical, _poisson_cumulant_from_exp, lambda mu: 1.0,
                                                        lambda t, work: None),
    ),
    "gaussian": Distribution(
        "gaussian", links=("identity", "log", "inverse"), canonical_link="identity",
        variance=_no_phi(lambda mu: np.ones_like(mu)), var_y=_unit_phi(lambda mu: np.ones_like(mu)),
        dlog_var=lambda mu, phi: np.zeros_like(mu), d2log_var=lambda mu, phi: np.zeros_like(mu),
        kernel=_gaussian_kernel, constant=_gaussian_const, unit_deviance=_gaussian_deviance,
        validate=_gaussian_validate, mustart=lambda y, wt: y, simulate=_gaussian_simulate,
        mu_bounds=(-np.inf, np.inf), dispersion=_SIGMA, saturated_own_link=False, scale_family=True,
    ),
    "Gamma": Distribution(
        "Gamma", links=("inverse", "log", "identity"), canonical_link="inverse",
        variance=_no_phi(lambda mu: mu * mu), var_y=_unit_phi(lambda mu: mu * mu),
        dlog_var=lambda mu, phi: 2.0 / mu, d2log_var=lambda mu, phi: -2.0 / (mu * mu),
        kernel=_gamma_kernel, constant=_gamma_const, unit_deviance=_gamma_deviance,
        validate=_gamma_validate, mustart=lambda y, wt: y, simulate=_gamma_simulate,
        mu_bounds=(_EPS, np.inf), dispersion=_SHAPE, saturated_own_link=False, scale_family=True,
    ),
    "nbinom2": Distribution(
        "nbinom2", links=("log", "identity"), canonical_link=None,
        variance=lambda mu, theta: mu + mu * mu / theta, var_y=lambda mu, theta: mu + mu * mu / theta,
        dlog_var=lambda mu, theta: (1.0 + 2.0 * mu / theta) / (mu + mu * mu / theta),
        d2log_var=lambda mu, theta: (2.0 / theta) / (mu + mu * mu / theta)
        - ((1.0 + 2.0 * mu / theta) / (mu + mu * mu / theta)) ** 2,
        kernel=_nb2_kernel, constant=_nb2_const, unit_deviance=_nb2_deviance,
        validate=_poisson_validate, mustart=lambda y, wt: y + 0.1, simulate=_nb2_simulate,
        mu_bounds=(_EPS, np.inf), dispersion=_NB_THETA,
    ),
    "nbinom1": Distribution(
        "nbinom1", links=("log", "identity"), canonical_link=None,
        variance=lambda mu, phi: mu * (1.0 + phi), var_y=lambda mu, phi: mu * (1.0 + phi),
        dlog_var=lambda mu, phi: 1.0 / mu, d2log_var=lambda mu, phi: -1.0 / (mu * mu),
        kernel=_nb1_kernel, constant=_nb1_const, unit_deviance=_nb1_deviance,
        validate=_poisson_validate, mustart=lambda y, wt: y + 0.1, simulate=_nb1_simulate,
        mu_bounds=(_EPS, np.inf), dispersion=_NB_PHI, mu_derivs=_nb1_mu_derivs, saturated=_nb1_saturated,
        expected_information=False,
    ),
}
