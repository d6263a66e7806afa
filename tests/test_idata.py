"""ArviZ InferenceData for every method: az.summary for all five, one forest of laplace, agq
and hmc, and the normal approximation's draws checked against the fit's own numbers."""

import warnings

import arviz as az
import numpy as np
import pytest

import glmmbayes as gb

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
QUICK_HMC = dict(draws=150, tune=150, chains=2, seed=5)


@pytest.fixture(scope="module")
def fits():
    d = gb.datasets.load("cbpp")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short hmc run may not pass its ESS checks
        for m in ("laplace", "agq", "pql", "joint", "hmc"):
            out[m] = gb.fit(CBPP, d, family="binomial", method=m, **(QUICK_HMC if m == "hmc" else {}))
    return out


def test_summary_for_every_method(fits):
    for m, fit in fits.items():
        s = az.summary(fit.idata)
        assert list(s.index[:5]) == [f"beta[{c}]" for c in fit.fixef.index] + ["sd_herd[(Intercept)]"], m
        assert "observed_data" in fit.idata.groups()
        if m != "hmc":
            assert "normal approximation" in fit.idata.attrs["draws_are"]
            assert fit.idata.attrs["glmmbayes_method"] == m


def test_forest_of_laplace_agq_hmc(fits):
    import matplotlib

    matplotlib.use("Agg")
    names = ["laplace", "agq", "hmc"]
    axes = az.plot_forest([fits[m].idata for m in names], model_names=names, var_names=["beta", "sd_herd"],
                          combined=True)
    labels = [t.get_text() for t in axes[0].figure.legends[0].get_texts()] if axes[0].figure.legends else \
        [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert set(labels) == set(names)


def test_normal_approximation_matches_the_fit(fits):
    """Draws centre on the estimate with the fit's standard errors; sd drawn on the log scale
    with the Hessian (profile) standard error, so its median is the estimate."""
    fit = fits["laplace"]
    post = fit.idata.posterior
    beta = post["beta"].values.reshape(-1, 4)
    n = beta.shape[0]
    np.testing.assert_allclose(beta.mean(0), fit.fixef, atol=4 * fit.se.max() / np.sqrt(n))
    np.testing.assert_allclose(beta.std(0), fit.se, rtol=0.05)
    sd = post["sd_herd"].values.ravel()
    assert (sd > 0).all()
    assert np.median(sd) == pytest.approx(fit.varcorr["sdcor"][0], rel=0.03)
    se_log = np.sqrt(fit.vcov_full.iloc[0, 0]) / fit.theta.iloc[0]  # θ = sd for a scalar GLMM term
    assert np.log(sd).std() == pytest.approx(se_log, rel=0.05)
    again = fit.to_inference_data(seed=0)
    np.testing.assert_array_equal(again.posterior["beta"].values, post["beta"].values)


def test_hmc_groups_and_posterior_predictive(fits):
    h = fits["hmc"]
    idata = h.idata
    assert list(idata.posterior.data_vars) == ["beta", "sd_herd", "b_herd"]
    assert {"beta_z", "u_herd"} <= set(idata.unconstrained_posterior.data_vars)
    assert "log_likelihood" in idata.groups()
    pp = h.to_inference_data(posterior_predictive=True, seed=1)
    y = pp.posterior_predictive["y"].values
    assert y.shape == (2, 150, 56) and "posterior_predictive" not in idata.groups()
    size = h.design.wt
    assert np.all((y >= 0) & (y <= size)) and np.allclose(y, np.round(y))
    with pytest.raises(ValueError, match="posterior"):
        fits["laplace"].to_inference_data(posterior_predictive=True)


def test_lmm_correlation_and_sigma():
    fit = gb.fit("Reaction ~ Days + (Days | Subject)", gb.datasets.load("sleepstudy"), family="gaussian")
    post = fit.idata.posterior
    assert {"beta", "sd_Subject", "cor_Subject", "sigma"} <= set(post.data_vars)
    cor = post["cor_Subject"].values[..., 0, 1].ravel()
    assert np.all(np.abs(cor) < 1)
    assert np.median(post["sigma"].values) == pytest.approx(fit.sigma, rel=0.01)


def test_hmc_summary_prints_posterior_columns(fits):
    h = fits["hmc"]
    text = str(h)
    assert "z value" not in text and "Pr(>|z|)" not in text
    head = next(line for line in text.splitlines() if "R-hat" in line)
    for col in ("Mean", "SD", "2.5%", "97.5%", "HDI low", "HDI high", "ESS", "R-hat"):
        assert col in head
    row = next(line for line in text.splitlines() if line.startswith("beta[period2]")).split()
    draws = h.idata.posterior["beta"].sel(fixef="period2").values.ravel()
    assert float(row[1]) == pytest.approx(draws.mean(), rel=1e-3)
    assert float(row[3]) == pytest.approx(np.quantile(draws, 0.025), rel=1e-3)
    assert "z value" in str(fits["laplace"])


# ------------------------------------------------------------------ every method, one by one
EXPECTED_GROUPS = {
    "hmc": {"posterior", "unconstrained_posterior", "sample_stats", "log_likelihood", "observed_data"},
    **{m: {"posterior", "observed_data"} for m in ("laplace", "agq", "pql", "joint")},
}


@pytest.mark.parametrize("method", ["laplace", "agq", "pql", "joint", "hmc"])
def test_groups_names_and_shapes(fits, method):
    fit = fits[method]
    idata = fit.idata
    assert idata is fit.idata  # built once per fit
    assert set(idata.groups()) == EXPECTED_GROUPS[method]
    post = idata.posterior
    chains, draws = (2, 150) if method == "hmc" else (4, 1000)
    assert post.sizes["chain"] == chains and post.sizes["draw"] == draws
    assert list(post.data_vars)[:2] == ["beta", "sd_herd"]
    assert post["beta"].dims == ("chain", "draw", "fixef")
    assert list(post["fixef"].values) == ["(Intercept)", "period2", "period3", "period4"]
    assert post["sd_herd"].shape == (chains, draws, 1)
    assert list(post["herd_coef"].values) == ["(Intercept)"]
    assert not any(v.endswith("_z") or v.startswith("u_") for v in post.data_vars)
    y = idata.observed_data["y"].values
    np.testing.assert_allclose(y, fit.design.y)
    assert y.shape == (56,)
    if method != "hmc":
        assert set(post.data_vars) == {"beta", "sd_herd"}
        assert idata.attrs["glmmbayes_method"] == method and idata.attrs["estimate_kind"] == fit.estimate_kind


@pytest.mark.parametrize("method", ["laplace", "agq"])
def test_normal_approximation_mean_and_covariance(fits, method):
    """On the scale where it is normal, (log sd, β) has mean (log σ̂, β̂) and covariance the
    fit's own vcov_full carried to log sd by the delta method (σ = θ for a scalar term):
    Var(log σ) = V_θθ / θ², Cov(log σ, β) = V_θβ / θ, Cov(β) = V_ββ. Checked within
    Monte Carlo error of 4000 seeded draws."""
    fit = fits[method]
    post = fit.idata.posterior
    w = np.column_stack([np.log(post["sd_herd"].values.reshape(-1)), post["beta"].values.reshape(-1, 4)])
    n = len(w)
    theta = float(fit.theta.iloc[0])
    mean = np.concatenate([[np.log(theta)], fit.fixef.to_numpy()])
    J = np.diag(np.concatenate([[1 / theta], np.ones(4)]))
    V = J @ fit.vcov_full.to_numpy() @ J
    sd = np.sqrt(np.diag(V))
    assert np.all(np.abs(w.mean(0) - mean) < 4 * sd / np.sqrt(n))
    S = np.cov(w, rowvar=False)
    np.testing.assert_allclose(np.sqrt(np.diag(S)), sd, rtol=4 / np.sqrt(2 * n))
    corr_draws = S / np.outer(np.sqrt(np.diag(S)), np.sqrt(np.diag(S)))
    np.testing.assert_allclose(corr_draws, V / np.outer(sd, sd), atol=4 / np.sqrt(n))
    np.testing.assert_allclose(fit.vcov_full.loc["(Intercept)":, "(Intercept)":], fit.vcov, rtol=1e-10)


@pytest.mark.parametrize("method", ["pql", "joint"])
def test_methods_without_a_variance_covariance(fits, method):
    """pql and joint give no covariance for the variance parameters: β ~ N(β̂, vcov), the sd held
    at its estimate, and attrs say so."""
    fit = fits[method]
    post = fit.idata.posterior
    beta = post["beta"].values.reshape(-1, 4)
    n = len(beta)
    se = fit.se.to_numpy()
    assert np.all(np.abs(beta.mean(0) - fit.fixef.to_numpy()) < 4 * se / np.sqrt(n))
    np.testing.assert_allclose(np.cov(beta, rowvar=False), fit.vcov.to_numpy(),
                               atol=4 * np.sqrt(2 / n) * np.outer(se, se).max())
    assert np.all(post["sd_herd"].values == fit.varcorr["sdcor"].iloc[0])
    assert "held at their estimates" in fit.idata.attrs["draws_are"]


def test_lmm_normal_approximation_centres_on_the_estimate():
    """Sleepstudy (ML, correlated slopes): β draws have mean β̂ and covariance vcov; sd, cor and
    σ draws have their medians at the estimates (normal on log sd, atanh cor, log σ)."""
    fit = gb.fit("Reaction ~ Days + (Days | Subject)", gb.datasets.load("sleepstudy"), family="gaussian",
                 REML=False)
    post = fit.idata.posterior
    beta = post["beta"].values.reshape(-1, 2)
    n = len(beta)
    se = fit.se.to_numpy()
    assert np.all(np.abs(beta.mean(0) - fit.fixef.to_numpy()) < 4 * se / np.sqrt(n))
    np.testing.assert_allclose(np.sqrt(np.diag(np.cov(beta, rowvar=False))), se, rtol=4 / np.sqrt(2 * n))
    vc = fit.varcorr
    sd = post["sd_Subject"].values.reshape(-1, 2)
    cor = post["cor_Subject"].values[..., 1, 0].ravel()
    sigma = post["sigma"].values.ravel()
    est = [vc.sdcor.iloc[0], vc.sdcor.iloc[1], vc.sdcor.iloc[2], vc.sdcor.iloc[3]]
    draws = [sd[:, 0], sd[:, 1], cor, sigma]
    for x, e in zip(draws, est):
        # a median of n draws lies within ~4 / (2 f(m) sqrt(n)); checked as a quantile instead
        assert abs(np.mean(x < e) - 0.5) < 4 * 0.5 / np.sqrt(n), (e, np.median(x))
    assert fit.idata.posterior["cor_Subject"].dims == ("chain", "draw", "Subject_coef", "Subject_coef2")


def test_nagq0_fit_has_beta_draws_and_says_why_not_the_variances():
    """nAGQ = 0 has no (θ, β) deviance to take a Hessian of: β ~ N(β̂, vcov), the sd held."""
    fit = gb.fit(CBPP, gb.datasets.load("cbpp"), family="binomial", nAGQ=0)
    post = fit.idata.posterior
    assert fit.method == "nagq0" and set(post.data_vars) == {"beta", "sd_herd"}
    beta = post["beta"].values.reshape(-1, 4)
    se = fit.se.to_numpy()
    assert np.all(np.abs(beta.mean(0) - fit.fixef.to_numpy()) < 4 * se / np.sqrt(len(beta)))
    assert np.all(post["sd_herd"].values == fit.varcorr["sdcor"].iloc[0])
    text = fit.idata.attrs["draws_are"]
    assert "beta normal with covariance vcov" in text and "held at their estimates" in text
