"""The family table: distributions and links (glum's Distribution x Link), written once for numpy
and for PyTensor (PyMC). See `distributions` for the conventions.

`get_family(name, link)` looks a family up; a `Family` is a distribution with a link and holds
everything PIRLS, the Laplace and AGQ objectives, PQL, the PyMC model and `simulate` need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FamilyError
from .distributions import DISTRIBUTIONS, CanonicalForm, Dispersion, Distribution, show_value
from .links import LINKS, Link
from .ops import NUMPY, pytensor_ops

_EPS = np.finfo(float).eps
_ALIASES = {"gamma": "Gamma", "normal": "gaussian", "bernoulli": "binomial",
            "negative_binomial": "nbinom2", "negbinomial": "nbinom2", "negative.binomial": "nbinom2",
            "nb2": "nbinom2", "nb1": "nbinom1", "nbinom": "nbinom2"}
HESSIANS = ("observed", "expected")


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
        """The exponential family's canonical link: observed and expected information agree."""
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
        if ops is NUMPY:  # two ufuncs: np.clip's dispatch costs more than the clipping
            lo, hi = self.dist.mu_bounds
            if lo > -np.inf:
                mu = np.maximum(mu, lo)
            if hi < np.inf:
                mu = np.minimum(mu, hi)
        return mu

    def mu_eta(self, eta, ops=NUMPY):
        d = self.link.mu_eta(eta, ops)
        if ops is NUMPY:
            d = np.maximum(np.abs(d), _EPS) * np.where(d < 0, -1.0, 1.0)
        return d

    def linkfun(self, mu, ops=NUMPY):
        return self.link.linkfun(mu, ops)

    def variance(self, mu, phi=1.0):
        """The unit variance function V(μ) (R's family$variance; NB2's includes θ)."""
        return self.dist.variance(mu, phi)

    def loglik(self, y, eta, wt, phi=1.0, ops=NUMPY):
        """Per-row log density of y given eta, fully normalized (the saturated constant included)."""
        return self.dist.loglik_eta(y, eta, wt, phi, self.link, ops)

    def unit_deviance(self, y, mu, wt, phi=1.0):
        return self.dist.unit_deviance(y, mu, wt, phi)

    def saturated_loglik(self, y, wt, phi=1.0):
        """The saturated model's log density (at μ = y for an exponential family): lme4's nAGQ > 1
        logLik omits its sum for binomial data."""
        if self.dist.saturated is not None:
            return self.dist.saturated(y, wt, phi)
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

    # ------------------------------------------------------------ derivatives in eta
    def working_weights(self, eta, wt, phi=1.0, mu=None):
        """IRLS weights wt μ'(η)² / var_y(μ) (Fisher scoring, as lme4; for NB1, which is not an
        exponential family, its quasi-likelihood weights); also μ and μ'(η). `mu`: linkinv(η)
        where the caller has it already."""
        mu = self.linkinv(eta) if mu is None else mu
        if self.fast_canonical is not None:
            # canonical link: mu_eta = V(mu), so one transcendental pass gives everything
            d = np.maximum(self.dist.variance(mu, phi), _EPS)
            return wt * d / phi, mu, d
        d = self.mu_eta(eta)
        return wt * d * d / self.dist.var_y(mu, phi), mu, d

    def dweights(self, eta, wt, phi=1.0):
        """dW/dη of the working weights W = wt μ'(η)² / var_y(μ) (analytic):
        W (2 d log|μ'|/dη - μ'(η) d log var_y/dμ)."""
        return self._dweights(eta, phi, *self.working_weights(eta, wt, phi))

    def _dweights(self, eta, phi, w, mu, d):
        fast = self.fast_canonical
        if fast is not None:
            return w * fast.dvariance(mu)
        return w * (2.0 * self.link.dlog_mu_eta(eta) - d * self.dist.dlog_var(mu, phi))

    def score(self, y, eta, wt, phi=1.0):
        """dℓ/dη per row (numpy): wt (y - μ) μ'(η) / var_y(μ) for an exponential family."""
        if self.dist.mu_derivs is None:
            w, mu, d = self.working_weights(eta, wt, phi)
            return w * (y - mu) / d
        mu = self.linkinv(eta)
        return self.dist.mu_derivs(y, mu, wt, phi)[0] * self.mu_eta(eta)

    def kernel_and_score(self, y, eta, wt, phi=1.0):
        """(loglik_kernel, dℓ/dη) in one pass (numpy).

        The quadrature evaluates both at rows x knots, so the canonical binomial and Poisson
        cases share their one exponential between the two.
        """
        fast = self.fast_canonical
        if fast is not None:
            return fast.kernel_and_score(y, eta, wt)
        return self.loglik_kernel(y, eta, wt, phi), self.score(y, eta, wt, phi)

    def _eta_derivs(self, y, eta, wt, phi, mu=None):
        """(μ'(η), a = d log|μ'|/dη, and the three μ-derivatives of ℓ) at η."""
        mu = self.linkinv(eta) if mu is None else mu
        d = self.mu_eta(eta)
        return d, self.link.dlog_mu_eta(eta), self.dist.derivatives(y, mu, wt, phi)

    def observed_weights(self, y, eta, wt, phi=1.0, mu=None):
        """-d²ℓ/dη² per row, the observed information that the Laplace approximation proper uses
        (`information_terms`). It equals the Fisher weights for a canonical link."""
        if self.fast_canonical is not None:
            return self.working_weights(eta, wt, phi, mu)[0]
        return self.information_terms(y, eta, wt, phi, mu)[1]

    def dweights_observed(self, y, eta, wt, phi=1.0):
        """d/dη of the observed weights (`information_terms`)."""
        if self.fast_canonical is not None:
            return self.dweights(eta, wt, phi)
        return self.information_terms(y, eta, wt, phi)[2]

    def information_terms(self, y, eta, wt, phi=1.0, mu=None):
        """(dℓ/dη, the observed information -d²ℓ/dη², its η-derivative) per row from one pass
        over the μ-derivatives: the Newton step of PIRLS takes the first two, the Laplace
        gradient the first and the last.

        With ℓ1, ℓ2, ℓ3 the μ-derivatives of ℓ, a = d log|μ'|/dη (so μ'' = μ' a) and a' its
        η-derivative: ℓ1 μ', -(ℓ2 μ'² + ℓ1 μ' a) and -(ℓ3 μ'³ + 3 ℓ2 μ'² a + ℓ1 μ' (a² + a'))."""
        if self.fast_canonical is not None:
            w, mu, d = self.working_weights(eta, wt, phi, mu)
            return w * (y - mu) / d, w, self._dweights(eta, phi, w, mu, d)
        d, a, (l1, l2, l3) = self._eta_derivs(y, eta, wt, phi, mu)
        a2 = self.link.d2log_mu_eta(eta)
        l1d = l1 * d
        return (l1d, -(l2 * d * d + l1d * a),
                -(l3 * d**3 + 3.0 * l2 * d * d * a + l1d * (a * a + a2)))

    # ------------------------------------------------------------ data
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


def get_family(family: str | Family = "gaussian", link: str | None = None) -> Family:
    """Look up a family by name (case-insensitive), with its default link unless one is given.

    Names: binomial, poisson, gaussian, Gamma, nbinom2 (negative binomial, Var y = μ + μ²/θ;
    aliases negative_binomial, nb2) and nbinom1 (Var y = μ(1 + φ); alias nb1)."""
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
    link = dist.links[0] if link is None else link
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


__all__ = ["Family", "get_family", "Distribution", "Dispersion", "CanonicalForm", "Link", "LINKS",
           "DISTRIBUTIONS", "NUMPY", "pytensor_ops", "show_value", "HESSIANS"]
