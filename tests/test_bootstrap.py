"""Parametric bootstrap (lme4 bootMer) on the studies engine."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import glmmbayes as gb
from glmmbayes.api import run_method
from glmmbayes.bootstrap import BootstrapResult, simulate_response
from glmmbayes.errors import SpecError
from glmmbayes.fit import FitCall

from conftest import load_reference

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
NAMES = ["(Intercept)", "period2", "period3", "period4", "sd.herd"]


@pytest.fixture(scope="module")
def cbpp_fit():
    return gb.fit(CBPP, gb.datasets.load("cbpp", derived=True), family="binomial")


@pytest.fixture(scope="module")
def small(cbpp_fit):
    return cbpp_fit.bootstrap(nsim=30, seed=7, progress=False)


def test_t0_is_the_fit_and_names_follow_bootmer(cbpp_fit, small):
    ref = {s["name"]: s for s in load_reference("cbpp_bootstrap")["bootstrap"]["stats"]}
    assert list(small.t0.index) == NAMES == list(ref)
    for n in NAMES:  # t0 is lme4's estimate (the Laplace fit's parity)
        assert small.t0[n] == pytest.approx(ref[n]["estimate"], abs=2e-3)
    assert small.lme4 == {"sd.herd": ".sig01"}
    assert isinstance(small, BootstrapResult)
    assert small.n_ok == 30 and small.n_failed == 0 and small.replicates.shape == (30, 5)


def test_reproducible_by_seed_serially_and_in_processes(cbpp_fit, small):
    again = cbpp_fit.bootstrap(nsim=30, seed=7, parallel=2, progress=False)
    pd.testing.assert_frame_equal(again.replicates, small.replicates, check_exact=True)
    other = cbpp_fit.bootstrap(nsim=5, seed=8, progress=False)
    assert not np.array_equal(other.replicates.to_numpy(), small.replicates.iloc[:5].to_numpy())


def test_each_replicate_is_a_refit_on_a_simulated_response(cbpp_fit, small):
    rng = np.random.default_rng(np.random.SeedSequence([7, 3]))
    y = simulate_response(cbpp_fit, rng)
    assert np.allclose(y * cbpp_fit.design.wt, np.round(y * cbpp_fit.design.wt))  # counts of successes
    refit = gb.fit(CBPP, gb.datasets.load("cbpp", derived=True).assign(incidence=np.round(y * cbpp_fit.design.wt)),
                   family="binomial")
    assert small.replicates.loc[3, "period2"] == pytest.approx(refit.fixef["period2"], abs=1e-10)
    assert small.replicates.loc[3, "sd.herd"] == pytest.approx(refit.varcorr["sdcor"].iloc[0], abs=1e-10)


def test_summary_statistics_and_intervals(small):
    ok = small.replicates
    assert small.bias.equals(ok.mean() - small.t0)
    assert np.allclose(small.sd, ok.std(ddof=1))
    perc = small.confint(0.9)
    assert np.allclose(perc["lower"], np.quantile(ok, 0.05, axis=0))  # R's quantile type 7
    assert np.allclose(perc["upper"], np.quantile(ok, 0.95, axis=0))
    basic = small.confint(0.9, kind="basic")
    assert np.allclose(basic["lower"], 2 * small.t0 - perc["upper"])
    z = norm.ppf(0.95)
    nrm = small.confint(0.9, kind="norm")
    assert np.allclose(nrm["upper"], small.t0 - small.bias + z * small.sd)
    assert small.confint(parm=".sig01").index.tolist() == ["sd.herd"]
    with pytest.raises(SpecError, match="unknown parameter 'sd.plot'"):
        small.confint(parm="sd.plot")
    with pytest.raises(SpecError, match="kind must be"):
        small.confint(kind="bca")
    assert "30 refits, 30 ok, 0 failed" in repr(small)


def _refit_failing_on_odd_totals(design, method, options):
    if int(round((design.y * design.wt).sum())) % 2:
        raise gb.FitError("refit refused (odd total)")
    return run_method(design, method, options)


def test_failed_refits_are_counted_and_reported(cbpp_fit):
    call = cbpp_fit.call
    from functools import partial

    failing = dataclasses.replace(cbpp_fit, call=FitCall(call.method, call.options, refit=partial(
        _refit_failing_on_odd_totals, method=call.method, options=call.options)))
    b = failing.bootstrap(nsim=20, seed=3, progress=False)
    assert b.n_failed > 0 and b.n_ok + b.n_failed == 20
    assert b.errors.str.contains("FitError: refit refused").all() and len(b.errors) == b.n_failed
    assert b.replicates.loc[b.errors.index].isna().all().all()
    assert np.isfinite(b.confint().to_numpy()).all()


def test_bad_arguments_are_named(cbpp_fit):
    with pytest.raises(SpecError, match="nsim must be a positive integer"):
        cbpp_fit.bootstrap(nsim=0)
    with pytest.raises(SpecError, match="parallel must be"):
        cbpp_fit.bootstrap(nsim=2, parallel=0)


def test_small_bootstrap_agrees_with_bootmer_within_monte_carlo_error(small):
    """30 refits against lme4's 500: means and sds within 4 Monte Carlo SEs of the difference."""
    ref = load_reference("cbpp_bootstrap")["bootstrap"]
    for s in ref["stats"]:
        nm, sd = s["name"], s["sd"]
        assert abs(small.mean[nm] - s["mean"]) < 4 * sd * math.sqrt(1 / 30 + 1 / 500), nm
        assert abs(small.sd[nm] - sd) < 4 * sd * math.sqrt(1 / (2 * 29) + 1 / (2 * 499)), nm


@pytest.mark.slow
def test_cbpp_500_refits_match_bootmer_within_monte_carlo_error(cbpp_fit):
    """lme4 bootMer, 500 refits, seed 1; ours: 500 refits, seed 1 (other random numbers).

    Each statistic is compared within 4 Monte Carlo SEs of the difference of two independent
    500-refit estimates, normal approximation: mean sd*sqrt(2/n), sd sd*sqrt(1/(n-1)),
    2.5%/97.5% quantiles sd*sqrt(2 p(1-p)/n)/phi(z_p) (e.g. period4, sd 0.41: quantiles within
    0.27, means within 0.10). About 15-20 s in 2 processes."""
    ref = load_reference("cbpp_bootstrap")["bootstrap"]
    b = cbpp_fit.bootstrap(nsim=500, seed=1, parallel=2, progress=False)
    n = 500
    assert b.n_ok == ref["n_ok"] == 500 and b.n_failed == 0
    ci = b.confint(0.95)
    print(b)
    for s in ref["stats"]:
        nm, sd = s["name"], s["sd"]
        assert abs(b.mean[nm] - s["mean"]) < 4 * sd * math.sqrt(2 / n), nm
        assert abs(b.sd[nm] - sd) < 4 * sd * math.sqrt(1 / (n - 1)), nm
        q_se = sd * math.sqrt(2 * 0.025 * 0.975 / n) / norm.pdf(norm.ppf(0.975))
        assert abs(ci.loc[nm, "lower"] - s["q2.5"]) < 4 * q_se, nm
        assert abs(ci.loc[nm, "upper"] - s["q97.5"]) < 4 * q_se, nm


def test_lmm_bootstrap_names_sigma_and_correlations():
    """A correlated random slope with a residual: every variance component under its name and
    lme4's (.sig01 sd, .sig02 cor, .sig03 sd, .sigma); the response is redrawn with its sigma."""
    fit = gb.fit("Reaction ~ Days + (Days | Subject)", gb.datasets.load("sleepstudy"), family="gaussian")
    b = fit.bootstrap(nsim=4, seed=2, progress=False)
    assert list(b.t0.index) == ["(Intercept)", "Days", "sd.Subject.(Intercept)", "sd.Subject.Days",
                                "cor.Subject.(Intercept).Days", "sigma"]
    assert b.lme4 == {"sd.Subject.(Intercept)": ".sig01", "cor.Subject.(Intercept).Days": ".sig02",
                      "sd.Subject.Days": ".sig03", "sigma": ".sigma"}
    assert b.t0["sigma"] == pytest.approx(fit.sigma, rel=1e-12) and b.n_ok == 4
    rng = np.random.default_rng(np.random.SeedSequence([2, 0]))
    y = simulate_response(fit, rng)
    refit = gb.fit("Reaction ~ Days + (Days | Subject)", gb.datasets.load("sleepstudy").assign(Reaction=y),
                   family="gaussian")
    assert b.replicates.loc[0, "sigma"] == pytest.approx(refit.sigma, rel=1e-10)


def test_same_bootstrap_on_a_dask_local_cluster(cbpp_fit, small):
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        b = cbpp_fit.bootstrap(nsim=30, seed=7, client=client, progress=False)
    pd.testing.assert_frame_equal(b.replicates, small.replicates, check_exact=True)
