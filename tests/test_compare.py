"""compare(): one spec, every method, one tidy table; a failing method does not stop the others."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes.compare import COLUMNS

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
ALL = ["pql", "laplace", "agq", "joint", "hmc"]


@pytest.fixture(scope="module")
def comparison():
    return gb.compare(
        gb.Spec(CBPP, family="binomial"), gb.datasets.load("cbpp"), methods=ALL,
        options={"hmc": {"draws": 300, "tune": 300, "chains": 2, "seed": 11}, "agq": {"nAGQ": 9}},
        progress=False,
    )


def test_every_method_in_the_table(comparison):
    t = comparison.table
    assert list(t.columns) == COLUMNS
    assert set(t["method"]) == set(ALL), comparison.errors
    kinds = t.groupby("method")["estimate_kind"].first().to_dict()
    assert kinds == {"pql": "mode", "laplace": "ml", "agq": "ml", "joint": "mode", "hmc": "mean"}
    fe = t[t["quantity"] == "fixef"]
    assert fe.groupby("method").size().eq(4).all()
    sd = t[(t["quantity"] == "sd") & (t["group"] == "herd")]
    assert sd.groupby("method").size().eq(1).all()
    # the table holds each fit's own numbers
    lap = comparison.fits["laplace"]
    row = fe[(fe["method"] == "laplace") & (fe["term"] == "period2")].iloc[0]
    assert row["estimate"] == pytest.approx(lap.fixef["period2"])
    assert row["se_or_sd"] == pytest.approx(lap.se["period2"])
    assert row["lower"] < row["estimate"] < row["upper"]
    # likelihoods only where one is defined (fully normalized: AGQ above Laplace on cbpp)
    ll = t[t["quantity"] == "loglik"].set_index("method")["estimate"]
    assert set(ll.index) == {"laplace", "agq"}
    assert ll["agq"] > ll["laplace"]


def test_hmc_intervals_are_equal_tailed_with_the_hdi_beside(comparison):
    """hmc rows: lower/upper are the 2.5% and 97.5% posterior quantiles (invariant under a change
    of scale), hdi_lower/hdi_upper the HDI; optimized fits have no HDI."""
    t = comparison.table
    h = comparison.fits["hmc"]
    draws = h.idata.posterior["sd_herd"].values.ravel()
    row = t[(t["method"] == "hmc") & (t["quantity"] == "sd")].iloc[0]
    assert row["lower"] == pytest.approx(np.quantile(draws, 0.025), rel=1e-12)
    assert row["upper"] == pytest.approx(np.quantile(draws, 0.975), rel=1e-12)
    import arviz as az

    lo, hi = az.hdi(draws, hdi_prob=0.95)
    assert (row["hdi_lower"], row["hdi_upper"]) == pytest.approx((lo, hi), rel=1e-12)
    assert t.loc[t["method"] != "hmc", ["hdi_lower", "hdi_upper"]].isna().all().all()


def test_wide_and_print(comparison):
    w = comparison.wide()
    assert list(w.columns) == ALL
    assert w.loc[("fixef", "", "period2")].notna().all()
    text = str(comparison)
    for m in ALL:
        assert m in text
    assert "period4" in text


def test_plot(comparison):
    fig = comparison.plot()
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "period2" in labels


def test_a_failing_method_does_not_break_the_others(monkeypatch):
    import dataclasses

    from glmmbayes import methods

    def boom(design, **kw):
        raise RuntimeError("forced failure")

    monkeypatch.setitem(methods.METHODS, "agq", dataclasses.replace(methods.METHODS["agq"], run=boom))
    c = gb.compare(CBPP, gb.datasets.load("cbpp"), methods=["laplace", "agq", "pql", "nonsense"], progress=False, family="binomial")
    assert set(c.fits) == {"laplace", "pql"}
    assert "forced failure" in c.errors["agq"]
    assert "unknown method" in c.errors["nonsense"]
    assert set(c.table["method"]) == {"laplace", "pql"}
    assert "FAILED" in str(c)


def test_sd_standard_errors_by_delta_method():
    c = gb.compare(CBPP, gb.datasets.load("cbpp"), methods=["laplace"], progress=False, family="binomial")
    f = c.fits["laplace"]
    row = c.table[(c.table["quantity"] == "sd")].iloc[0]
    # scalar term: sd = theta, so its SE is the sqrt of the theta variance from the Hessian
    assert row["se_or_sd"] == pytest.approx(np.sqrt(f.vcov_full.iloc[0, 0]), rel=1e-6)


def test_concurrent_methods_give_the_sequential_answers():
    """Likelihood methods run in threads (workers=2) give exactly the sequential fits."""
    import glmmbayes as gb

    cbpp = gb.datasets.load("cbpp")
    spec = gb.Spec("cbind(incidence, size - incidence) ~ period + (1 | herd)", family="binomial")
    methods = ["pql", "laplace", "agq", "joint"]
    seq = gb.compare(spec, cbpp, methods=methods, workers=1, progress=False)
    par = gb.compare(spec, cbpp, methods=methods, workers=2, progress=False)
    assert list(par.fits) == methods and not par.errors
    cols = ["method", "quantity", "term", "group", "estimate", "se_or_sd", "loglik"]
    pd.testing.assert_frame_equal(seq.table[cols], par.table[cols])
    assert (par.table["seconds"] > 0).all()


def test_workers_must_be_a_positive_integer():
    import glmmbayes as gb

    with pytest.raises(gb.errors.SpecError, match="workers"):
        gb.compare("y ~ x + (1 | g)", pd.DataFrame({"y": [0, 1], "x": [0.0, 1.0], "g": ["a", "b"]}),
                   methods=["laplace"], workers=0)
