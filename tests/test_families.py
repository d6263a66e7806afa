"""The family table: links, derivatives, log densities against scipy.stats, unit deviances,
numerically stable log mu / log(1 - mu), and the PyTensor graph against the numpy value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from glmmbayes.errors import DataError, FamilyError
from glmmbayes.families import DISTRIBUTIONS, LINKS, get_family

PAIRS = [
    ("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"),
    ("poisson", "log"),
    ("gaussian", "identity"), ("gaussian", "log"), ("gaussian", "inverse"),
    ("Gamma", "inverse"), ("Gamma", "log"), ("Gamma", "identity"),
    ("nbinom2", "log"), ("nbinom2", "identity"), ("nbinom1", "log"), ("nbinom1", "identity"),
]
NB_PHI = {"nbinom2": 2.5, "nbinom1": 1.7}  # θ (Var = μ + μ²/θ) and φ (Var = μ(1 + φ))
IDS = [f"{f}-{l}" for f, l in PAIRS]


def test_pairs_cover_the_table():
    assert sorted(PAIRS) == sorted((d, l) for d, dist in DISTRIBUTIONS.items() for l in dist.links)
    assert set(LINKS) == {l for _, l in PAIRS}


def _mu_grid(family: str) -> np.ndarray:
    if family == "binomial":
        return np.array([1e-6, 0.01, 0.2, 0.5, 0.73, 0.99, 1 - 1e-6])
    if family == "gaussian":
        return np.array([0.05, 0.5, 1.0, 3.7, 42.0])  # positive so that log/inverse links apply
    return np.array([1e-3, 0.3, 1.0, 2.5, 17.0, 300.0])


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_family_lookup(family, link):
    fam = get_family(family, link)
    assert fam.name == family and fam.link.name == link
    assert fam.is_canonical == (link == DISTRIBUTIONS[family].canonical_link)
    assert get_family(family).link.name == DISTRIBUTIONS[family].links[0]  # the default link
    assert get_family(fam) is fam
    assert get_family(fam, link) == fam


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_linkinv_of_linkfun_is_identity(family, link):
    fam = get_family(family, link)
    mu = _mu_grid(family)
    eta = fam.linkfun(mu)
    assert np.all(np.isfinite(eta))
    np.testing.assert_allclose(fam.link.linkinv(eta), mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fam.linkinv(eta), mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fam.linkfun(fam.linkinv(eta)), eta, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_mu_eta_is_the_derivative(family, link):
    fam = get_family(family, link)
    eta = fam.linkfun(_mu_grid(family)[1:-1])
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    numeric = (fam.link.linkinv(eta + h) - fam.link.linkinv(eta - h)) / (2 * h)
    np.testing.assert_allclose(fam.link.mu_eta(eta), numeric, rtol=1e-7)
    np.testing.assert_allclose(fam.mu_eta(eta), numeric, rtol=1e-7)


def _data(family: str, rng):
    """y, mu, wt, phi on the family's support (binomial y are proportions, wt trials)."""
    mu = _mu_grid(family)
    n = len(mu)
    if family == "binomial":
        wt = np.array([1, 1, 5, 10, 37, 3, 100], dtype=float)
        y = rng.binomial(wt.astype(int), mu) / wt
        y[:2] = [0.0, 1.0]
        return y, mu, wt, 1.0
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
        y[0] = 0.0
        return y, mu, np.ones(n), 1.0
    if family == "gaussian":
        return mu + rng.normal(size=n), mu, np.ones(n), 2.3
    if family in NB_PHI:
        fam = get_family(family)
        y = fam.dist.simulate(rng, mu, np.ones(n), NB_PHI[family])
        y[0] = 0.0
        return y, mu, np.ones(n), NB_PHI[family]
    phi = 0.4
    return rng.gamma(1 / phi, mu * phi), mu, np.ones(n), phi


def _scipy_logpdf(family, y, mu, wt, phi):
    if family == "binomial":
        return stats.binom.logpmf(np.round(y * wt), wt.astype(int), mu)
    if family == "poisson":
        return stats.poisson.logpmf(y, mu)
    if family == "gaussian":
        return stats.norm.logpdf(y, mu, np.sqrt(phi / wt))
    if family == "nbinom2":  # glmmTMB nbinom2 / MASS: size θ
        return stats.nbinom.logpmf(y, phi, phi / (phi + mu))
    if family == "nbinom1":  # glmmTMB nbinom1: size μ/φ, Var = μ(1 + φ)
        return stats.nbinom.logpmf(y, mu / phi, 1.0 / (1.0 + phi))
    return stats.gamma.logpdf(y, a=wt / phi, scale=mu * phi / wt)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_loglik_matches_scipy(family, link):
    fam = get_family(family, link)
    y, mu, wt, phi = _data(family, np.random.default_rng(1))
    eta = fam.linkfun(mu)
    got = fam.loglik(y, eta, wt, phi)
    np.testing.assert_allclose(got, _scipy_logpdf(family, y, mu, wt, phi), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_kernel_and_score(family, link):
    """The fused (kernel, dℓ/dη) of the quadrature: the kernel equals loglik_kernel and the score
    is its η-derivative, on (knots, rows) arrays as AGQ evaluates them."""
    fam = get_family(family, link)
    y, mu, wt, phi = _data(family, np.random.default_rng(2))
    eta = fam.linkfun(mu)[None, :] + np.array([-0.01, 0.0, 0.02])[:, None] * np.abs(fam.linkfun(mu))
    ker, score = fam.kernel_and_score(y, eta, wt, phi)
    np.testing.assert_allclose(ker, fam.loglik_kernel(y, eta, wt, phi), rtol=1e-12, atol=1e-12)
    h = 1e-6 * np.maximum(1e-2, np.abs(eta))  # relative: Gamma-identity curves sharply at small η
    numeric = (fam.loglik_kernel(y, eta + h, wt, phi) - fam.loglik_kernel(y, eta - h, wt, phi)) / (2 * h)
    np.testing.assert_allclose(score, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(numeric)))


@pytest.mark.parametrize("family", ["gaussian", "Gamma"])
def test_loglik_with_prior_weights(family):
    # prior weights scale the dispersion: y_i ~ N(mu, phi / w_i), Gamma with shape w_i / phi
    fam = get_family(family)
    y, mu, _, phi = _data(family, np.random.default_rng(2))
    wt = np.linspace(0.5, 3.0, len(y))
    got = fam.loglik(y, fam.linkfun(mu), wt, phi)
    np.testing.assert_allclose(got, _scipy_logpdf(family, y, mu, wt, phi), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_unit_deviance_is_twice_the_loglik_gap_to_saturated(family, link):
    fam = get_family(family, link)
    y, mu, wt, phi = _data(family, np.random.default_rng(3))
    ll_mu = _scipy_logpdf(family, y, mu, wt, phi)
    ll_sat = _scipy_logpdf(family, y, y, wt, phi)  # mu = y
    if family == "nbinom1":  # not an exponential family: the saturated mean is not y
        from scipy import optimize

        def best(yi):
            r = optimize.minimize_scalar(lambda lm: -_scipy_logpdf(family, np.array([yi]), np.exp([lm]), np.ones(1), phi)[0],
                                         bounds=(-30, 10), method="bounded", options={"xatol": 1e-12})
            return -r.fun

        ll_sat = np.array([best(yi) if yi > 0 else 0.0 for yi in y])
    # gaussian/Gamma deviances are on the phi = 1 scale; NB deviances include θ (or φ)
    scale = phi if family in ("gaussian", "Gamma") else 1.0
    dev = fam.unit_deviance(y, mu, wt, phi)
    np.testing.assert_allclose(dev, 2.0 * scale * (ll_sat - ll_mu), rtol=1e-9, atol=1e-10)
    assert np.all(dev >= -1e-12)
    if family != "nbinom1":
        np.testing.assert_allclose(fam.unit_deviance(y, y, wt, phi), 0.0, atol=1e-12)
    # the family's own saturated log-likelihood
    np.testing.assert_allclose(fam.saturated_loglik(y, wt, phi), ll_sat, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_variance_function(family, link):
    fam = get_family(family, link)
    mu = _mu_grid(family)
    expected = {"binomial": mu * (1 - mu), "poisson": mu, "gaussian": np.ones_like(mu), "Gamma": mu**2,
                "nbinom2": mu + mu**2 / 2.5, "nbinom1": mu * 2.7}[family]
    np.testing.assert_allclose(fam.variance(mu, NB_PHI.get(family, 1.0)), expected, rtol=1e-14)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_score_observed_information_and_derivatives(family, link):
    """dℓ/dη, the observed information -d²ℓ/dη² (the Laplace approximation's Hessian), its
    η-derivative and the Fisher weights' η-derivative against central differences of loglik."""
    fam = get_family(family, link)
    y, mu, wt, phi = _data(family, np.random.default_rng(6))
    eta = fam.linkfun(mu[1:-1])
    y, wt = y[1:-1], wt[1:-1]
    h = 1e-4 * np.maximum(0.1, np.abs(eta))

    def ll(e):
        return fam.loglik(y, e, wt, phi)

    def close(got, want):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * (1 + np.max(np.abs(want))))

    close(fam.score(y, eta, wt, phi), (ll(eta + h) - ll(eta - h)) / (2 * h))
    close(fam.observed_weights(y, eta, wt, phi), -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h**2)
    close(fam.dweights_observed(y, eta, wt, phi),
          (fam.observed_weights(y, eta + h, wt, phi) - fam.observed_weights(y, eta - h, wt, phi)) / (2 * h))
    if fam.dist.expected_information:
        close(fam.dweights(eta, wt, phi),
              (fam.working_weights(eta + h, wt, phi)[0] - fam.working_weights(eta - h, wt, phi)[0]) / (2 * h))
    if fam.is_canonical:  # observed = expected information
        np.testing.assert_allclose(fam.observed_weights(y, eta, wt, phi), fam.working_weights(eta, wt, phi)[0],
                                   rtol=1e-10)


EXTREME = np.array([-40.0, -10.0, 0.0, 10.0, 40.0])


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_stable_log_mu_and_log1m_mu_on_unit_interval(link):
    L = LINKS[link]
    lm, l1m = L.log_mu(EXTREME), L.log1m_mu(EXTREME)
    assert np.all(np.isfinite(lm)) and np.all(np.isfinite(l1m))
    assert np.all(lm <= 0) and np.all(l1m <= 0)
    ref = {
        "logit": (-np.logaddexp(0, -EXTREME), -np.logaddexp(0, EXTREME)),
        "probit": (special.log_ndtr(EXTREME), special.log_ndtr(-EXTREME)),
        # log(1 - exp(-e^eta)) = log(-expm1(-e^eta)); log(1 - mu) = -e^eta
        "cloglog": (np.log(-np.expm1(-np.exp(EXTREME))), -np.exp(EXTREME)),
    }[link]
    np.testing.assert_allclose(lm, ref[0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(l1m, ref[1], rtol=1e-12, atol=1e-300)
    # the naive log(linkinv) loses all precision at -40 where the stable form does not
    assert lm[0] < -39  # log mu at eta = -40 is about -40 (logit, cloglog) or -804.6 (probit)
    # where mu is representable, they agree with the plain logarithms
    mid = np.array([-3.0, -0.5, 0.0, 0.7, 3.0])
    np.testing.assert_allclose(L.log_mu(mid), np.log(L.linkinv(mid)), rtol=1e-10)
    np.testing.assert_allclose(L.log1m_mu(mid), np.log1p(-L.linkinv(mid)), rtol=1e-8)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_loglik_finite_at_extreme_eta(link):
    fam = get_family("binomial", link)
    y = np.full(len(EXTREME), 0.4)
    wt = np.full(len(EXTREME), 5.0)
    ll = fam.loglik(y, EXTREME, wt)
    assert np.all(np.isfinite(ll))
    assert ll[0] < -30 and ll[-1] < -30  # two successes at mu ~ 0 and three failures at mu ~ 1
    # y = 0 at eta = -40 and y = 1 at eta = 40 are almost certain
    assert fam.loglik(np.array([0.0]), np.array([-40.0]), np.array([5.0]))[0] == pytest.approx(0.0, abs=1e-12)
    if link != "cloglog":  # cloglog: 1 - mu at eta=40 is exp(-e^40), log(mu) is exactly 0
        assert fam.loglik(np.array([1.0]), np.array([40.0]), np.array([5.0]))[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.isfinite(fam.mu_eta(EXTREME))) and np.all(fam.mu_eta(EXTREME) > 0)
    mu = fam.linkinv(EXTREME)
    assert np.all((mu > 0) & (mu < 1))  # clipped away from 0 and 1 for PIRLS


def test_log_link_poisson_extreme():
    fam = get_family("poisson")
    np.testing.assert_array_equal(fam.link.log_mu(EXTREME), EXTREME)
    ll = fam.loglik(np.array([0.0, 3.0]), np.array([-40.0, -40.0]), np.ones(2))
    assert np.all(np.isfinite(ll))
    assert ll[1] == pytest.approx(3 * -40.0 - np.exp(-40.0) - special.gammaln(4.0), rel=1e-14)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_information_terms_in_one_pass(family, link):
    """The fused (score, observed information, its η-derivative) of PIRLS and the Laplace
    gradient equal the three computed alone, for every family and link."""
    fam = get_family(family, link)
    y, mu, wt, phi = _data(family, np.random.default_rng(5))
    eta = fam.linkfun(mu)
    s, w, dw = fam.information_terms(y, eta, wt, phi)
    np.testing.assert_allclose(s, fam.score(y, eta, wt, phi), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, fam.observed_weights(y, eta, wt, phi), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, fam.dweights_observed(y, eta, wt, phi), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family, size", [("nbinom1", 1e-13), ("nbinom2", 1e13)])
def test_negative_binomials_keep_their_digits_in_the_poisson_limit(family, size):
    """Near its Poisson limit (NB1 φ -> 0, NB2 θ -> ∞) a negative binomial's log Γ(y + k) -
    log Γ(k) has k ~ 1e13: as the difference of two gammaln of ~4e14 it lost every digit (0.05
    off), and PIRLS could not converge there. As the sum Σ_{j<y} log(k + j) the log-density
    and its μ-derivatives equal the Poisson ones to the size of the limit's own correction."""
    fam, pois = get_family(family), get_family("poisson")
    y = np.array([0.0, 1.0, 2.0, 5.0, 17.0, 3.0])
    mu = np.array([0.3, 1.2, 2.5, 4.0, 15.0, 0.9])
    eta, wt = np.log(mu), np.ones(6)
    np.testing.assert_allclose(fam.loglik(y, eta, wt, size), pois.loglik(y, eta, wt), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fam.score(y, eta, wt, size), pois.score(y, eta, wt), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fam.observed_weights(y, eta, wt, size), pois.observed_weights(y, eta, wt),
                               rtol=1e-9, atol=1e-9)


def test_pytensor_loglik_matches_numpy():
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from glmmbayes.families import pytensor_ops

    ops = pytensor_ops()
    y_, e_, w_ = pt.dvector("y"), pt.dvector("eta"), pt.dvector("wt")
    for family, link in PAIRS:
        fam = get_family(family, link)
        y, mu, wt, phi = _data(family, np.random.default_rng(4))
        eta = fam.linkfun(mu)
        fn = pytensor.function([y_, e_, w_], fam.loglik(y_, e_, w_, phi, ops=ops), mode="FAST_COMPILE")
        np.testing.assert_allclose(fn(y, eta, wt), fam.loglik(y, eta, wt, phi), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{family}/{link}")
        if family == "binomial":  # the stable tails survive in the graph too
            ext = fn(np.full(5, 0.4), EXTREME, np.full(5, 5.0))
            np.testing.assert_allclose(ext, fam.loglik(np.full(5, 0.4), EXTREME, np.full(5, 5.0)), rtol=1e-8)


@pytest.mark.parametrize("family", list(DISTRIBUTIONS))
def test_simulate_support(family):
    fam = get_family(family)
    y, mu, wt, phi = _data(family, np.random.default_rng(5))
    sim = fam.simulate(np.random.default_rng(0), fam.linkfun(mu), wt, phi)
    assert sim.shape == mu.shape and np.all(np.isfinite(sim))
    fam.validate(sim, wt)  # a draw is always valid data for its family


def test_validate_names_the_row():
    with pytest.raises(DataError, match=r"row 2 has y = -1\b"):
        get_family("poisson").validate(np.array([0.0, 1.0, -1.0]), np.ones(3))
    with pytest.raises(DataError, match=r"row 7 has y = 0\b"):  # rows= maps back to input rows
        get_family("Gamma").validate(np.array([1.0, 0.0]), np.ones(2), rows=np.array([3, 7]))


@pytest.mark.parametrize(
    "family, link, match",
    [
        ("binomal", None, "unknown family 'binomal'"),
        ("poisson", "logit", "link 'logit' is not supported for family 'poisson'; supported: log"),
        ("binomial", "log", "link 'log' is not supported for family 'binomial'"),
        ("Gamma", "sqrt", "unknown link 'sqrt'"),
    ],
)
def test_family_errors(family, link, match):
    with pytest.raises(FamilyError, match=match):
        get_family(family, link)


def test_aliases():
    assert get_family("Poisson").name == "poisson" and get_family("GAMMA").name == "Gamma"
    assert get_family("negative_binomial").name == "nbinom2" and get_family("nb1").name == "nbinom1"
    assert get_family("gamma").name == "Gamma"
    assert get_family("normal").name == "gaussian"


def test_binomial_constant_of_unit_weights_skips_lgamma_and_equals_it():
    """log C(wt, wt y): with every weight 1 (Bernoulli rows) it is 0 without three lgamma passes,
    equal to the formula; trials keep the formula."""
    from scipy.special import gammaln

    from glmmbayes.families import distributions as dd
    from glmmbayes.families.ops import NUMPY

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500).astype(float)
    one = np.ones_like(y)
    np.testing.assert_array_equal(dd._binomial_const(y, one, 1.0, NUMPY),
                                  gammaln(2.0) - gammaln(y + 1.0) - gammaln(2.0 - y))
    wt = rng.integers(1, 9, 500).astype(float)
    k = rng.integers(0, 9, 500) % (wt + 1)
    np.testing.assert_allclose(dd._binomial_const(k / wt, wt, 1.0, NUMPY),
                               gammaln(wt + 1) - gammaln(k + 1) - gammaln(wt - k + 1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", [3, 63, 64, 5000])
def test_numpy_logistic_functions_equal_scipys_in_both_tails(n):
    """expit, log(expit) and log(1 + e^x) on arrays long enough for the vectorized numpy forms
    (and short ones, which call scipy) agree with scipy's to rounding, out to the tails,
    infinities and NaN; no overflow warning escapes."""
    import warnings

    from scipy import special

    from glmmbayes.families.ops import NUMPY

    rng = np.random.default_rng(4)
    edges = np.array([-1e308, -800.0, -40.0, -1e-300, 0.0, 1e-300, 40.0, 800.0, 1e308, np.inf, -np.inf, np.nan])
    x = np.concatenate([rng.normal(0, 30, max(n - len(edges), 0)), edges])[-n:] if n >= len(edges) else rng.normal(0, 30, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = {"expit": NUMPY.expit(x), "log_expit": NUMPY.log_expit(x), "log1pexp": NUMPY.log1pexp(x)}
    with np.errstate(all="ignore"):
        want = {"expit": special.expit(x), "log_expit": special.log_expit(x), "log1pexp": np.logaddexp(0.0, x)}
    for name in got:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-15, atol=0, equal_nan=True, err_msg=name)
