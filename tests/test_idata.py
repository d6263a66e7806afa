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
