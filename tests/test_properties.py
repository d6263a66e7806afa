"""Property-based tests (hypothesis): invariances a GLMM fit must have, and random small data
frames of random dtypes that must end in a fit or a named glmmbayes error.

The default run draws few examples; the slow marks run many more."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glmmbayes as gb
from glmmbayes.errors import GlmmError

FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gb.fit(*args, **kw)


@pytest.fixture(scope="module")
def cbpp():
    return gb.datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return fit(CBPP, cbpp, family="binomial")


def _same(a, b, tol=1e-6):
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(a.theta_hat, b.theta_hat, rtol=tol, atol=tol)
    assert a.loglik == pytest.approx(b.loglik, abs=tol)


def _permute_and_relabel(cbpp, cbpp_fit, seed):
    rng = np.random.default_rng(seed)
    d = cbpp.iloc[rng.permutation(len(cbpp))]
    new = {lv: f"h{k}" for lv, k in zip(cbpp.herd.cat.categories, rng.permutation(15))}
    d = d.assign(herd=d.herd.astype(str).map(new))
    f = fit(CBPP, d, family="binomial")
    _same(f, cbpp_fit)
    # the random effects follow their herds, whatever the labels and row order
    back = {v: k for k, v in new.items()}
    ours = f.ranef["herd"].rename(index=back).sort_index()
    np.testing.assert_allclose(ours.to_numpy(), cbpp_fit.ranef["herd"].sort_index().to_numpy(), atol=1e-5)


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_row_order_and_group_labels_do_not_matter(cbpp, cbpp_fit, seed):
    _permute_and_relabel(cbpp, cbpp_fit, seed)


@pytest.mark.slow
@SLOW
@given(seed=st.integers(0, 2**31 - 1))
def test_row_order_and_group_labels_do_not_matter_many(cbpp, cbpp_fit, seed):
    _permute_and_relabel(cbpp, cbpp_fit, seed)


@FAST
@given(scale=st.floats(1e-4, 1e4).filter(lambda v: abs(np.log10(v)) > 0.1))
def test_rescaling_a_covariate_rescales_its_coefficient(scale):
    """x -> c x: β_x -> β_x / c and SE_x -> SE_x / c; everything else unchanged."""
    d = gb.datasets.load("Contraception")
    a = fit("use ~ age + urban + (1 | district)", d, family="binomial")
    b = fit("use ~ agec + urban + (1 | district)", d.assign(agec=d.age * scale), family="binomial")
    assert b.fixef["agec"] * scale == pytest.approx(a.fixef["age"], rel=1e-5)
    assert b.se["agec"] * scale == pytest.approx(a.se["age"], rel=1e-3)
    assert b.fixef["urbanY"] == pytest.approx(a.fixef["urbanY"], rel=1e-5, abs=1e-6)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-6)


@FAST
@given(c=st.floats(-5, 5))
def test_a_constant_added_to_the_offset_shifts_the_intercept(c):
    d = gb.datasets.load("grouseticks")
    f0 = fit(gb.Spec("TICKS ~ YEAR + (1 | LOCATION)", family="poisson", offset="o"), d.assign(o=0.1 * d.cHEIGHT))
    f1 = fit(gb.Spec("TICKS ~ YEAR + (1 | LOCATION)", family="poisson", offset="o"), d.assign(o=0.1 * d.cHEIGHT + c))
    assert f1.fixef["(Intercept)"] == pytest.approx(f0.fixef["(Intercept)"] - c, abs=1e-5)
    np.testing.assert_allclose(f1.fixef.iloc[1:], f0.fixef.iloc[1:], atol=1e-5)
    assert f1.loglik == pytest.approx(f0.loglik, abs=1e-6)


def test_cbind_equals_proportion_with_weights(cbpp, cbpp_fit):
    """cbind(k, n - k) and y = k/n with weights = n are the same binomial model."""
    f = fit(gb.Spec("p ~ period + (1 | herd)", family="binomial", weights="size"),
            cbpp.assign(p=cbpp.incidence / cbpp["size"]))
    _same(f, cbpp_fit, tol=1e-7)


def test_bernoulli_rows_equal_their_binomial_aggregate():
    """Expanding cbpp into one 0/1 row per animal gives the same fit as cbind(); the
    log-likelihoods differ by exactly the binomial coefficients Σ log C(n, k)."""
    from scipy.special import gammaln

    cbpp = gb.datasets.load("cbpp")
    rows = []
    for _, r in cbpp.iterrows():
        rows += [(r.herd, r.period, 1)] * int(r.incidence) + [(r.herd, r.period, 0)] * int(r["size"] - r.incidence)
    long = pd.DataFrame(rows, columns=["herd", "period", "y"]).astype({"herd": cbpp.herd.dtype, "period": cbpp.period.dtype})
    agg = fit(CBPP, cbpp, family="binomial")
    f = fit("y ~ period + (1 | herd)", long, family="binomial")
    np.testing.assert_allclose(f.fixef, agg.fixef, atol=1e-6)
    np.testing.assert_allclose(f.theta_hat, agg.theta_hat, atol=1e-6)
    n, k = cbpp["size"].to_numpy(float), cbpp.incidence.to_numpy(float)
    logC = float(np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)))
    assert f.loglik == pytest.approx(agg.loglik - logC, abs=1e-6)


# ------------------------------------------------------------------ random data frames

_DTYPES = ["float64", "int64", "uint8", "Int64", "bool", "str", "category", "object_mixed"]


def _column(draw, n, kind):
    rng_vals = draw(st.lists(st.integers(-3, 6), min_size=n, max_size=n))
    v = np.array(rng_vals)
    if kind == "float64":
        return v.astype(float) + draw(st.sampled_from([0.0, 0.5]))
    if kind in ("int64", "Int64"):
        s = pd.Series(v, dtype=kind)
        if kind == "Int64" and n and draw(st.booleans()):
            s.iloc[0] = pd.NA
        return s
    if kind == "uint8":
        return np.abs(v).astype("uint8")
    if kind == "bool":
        return v > 1
    if kind == "str":
        return np.array([f"l{x}" for x in v], dtype=object)
    if kind == "category":
        return pd.Categorical([f"c{abs(x) % 3}" for x in v])
    return np.array([x if x % 2 else f"s{x}" for x in v], dtype=object)  # mixed types


@st.composite
def frames(draw):
    n = draw(st.integers(0, 30))
    kinds = {c: draw(st.sampled_from(_DTYPES)) for c in ("y", "x", "g")}
    d = pd.DataFrame({c: _column(draw, n, k) for c, k in kinds.items()})
    if draw(st.booleans()) and n:
        d.loc[d.index[-1], "x"] = np.nan if kinds["x"] == "float64" else d.loc[d.index[-1], "x"]
    return d


def _try(d, family, method, formula):
    try:
        f = fit(formula, d, family=family, method=method)
    except GlmmError:
        return  # a named error: fine
    assert isinstance(f, gb.Fit)
    assert np.all(np.isfinite(f.beta_hat)) or not f.converged


FORMULAS = ["y ~ x + (1 | g)", "y ~ 1 + (x | g)", "y ~ 0 + x + (1 | g)", "cbind(y, x) ~ 1 + (1 | g)"]


@FAST
@given(d=frames(), family=st.sampled_from(["binomial", "poisson", "gaussian", "Gamma", "nbinom2"]),
       method=st.sampled_from(["laplace", "pql", "agq", "joint"]), formula=st.sampled_from(FORMULAS))
def test_random_frames_give_a_fit_or_a_named_error(d, family, method, formula):
    _try(d, family, method, formula)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=frames(), family=st.sampled_from(["binomial", "poisson", "gaussian", "Gamma", "nbinom2", "nbinom1"]),
       method=st.sampled_from(["laplace", "pql", "agq", "joint"]), formula=st.sampled_from(FORMULAS))
def test_random_frames_give_a_fit_or_a_named_error_many(d, family, method, formula):
    _try(d, family, method, formula)


@st.composite
def plausible_frames(draw):
    """Data a user might fit, pushed to the edges: few groups, one row per group, constant or
    huge covariates, all-zero or all-one responses."""
    n = draw(st.integers(4, 40))
    m = draw(st.integers(2, max(2, n // 2)))
    g = np.array([f"g{i % m}" for i in range(n)])
    x = np.array(draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    x = x * draw(st.sampled_from([1.0, 1e-6, 1e6])) + draw(st.sampled_from([0.0, 100.0]))
    if draw(st.booleans()):
        x[:] = x[0]  # constant covariate (aliased with the intercept)
    y = np.array(draw(st.lists(st.integers(0, draw(st.sampled_from([0, 1, 5, 1000]))), min_size=n, max_size=n)))
    return pd.DataFrame({"y": y, "x": x, "g": g, "n": np.maximum(y, 1) + draw(st.integers(0, 3))})


PLAUSIBLE = ["y ~ x + (1 | g)", "y ~ 1 + (x | g)", "cbind(y, n - y) ~ x + (1 | g)", "y ~ x + (1 | g) + (1 | x)"]


@FAST
@given(d=plausible_frames(), family=st.sampled_from(["binomial", "poisson", "gaussian", "Gamma", "nbinom2"]),
       method=st.sampled_from(["laplace", "pql", "agq", "joint"]), formula=st.sampled_from(PLAUSIBLE))
def test_edge_data_give_a_fit_or_a_named_error(d, family, method, formula):
    _try(d, family, method, formula)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=plausible_frames(), family=st.sampled_from(["binomial", "poisson", "gaussian", "Gamma", "nbinom2", "nbinom1"]),
       method=st.sampled_from(["laplace", "pql", "agq", "joint"]), formula=st.sampled_from(PLAUSIBLE))
def test_edge_data_give_a_fit_or_a_named_error_many(d, family, method, formula):
    _try(d, family, method, formula)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.one_of(frames(), plausible_frames()), family=st.sampled_from(["binomial", "poisson", "gaussian"]),
       formula=st.sampled_from(["y ~ x + (1 | g)", "y ~ 1 + (x | g)"]))
def test_hmc_on_random_frames_gives_a_fit_or_a_named_error(d, family, formula):
    """The sampler gets the same harness as the likelihood methods (short chains: the point is
    that bad data end in a named error or a fit, never in a PyMC or PyTensor traceback)."""
    try:
        f = fit(formula, d, family=family, method="hmc", draws=30, tune=30, chains=1, seed=1,
                progressbar=False)
    except GlmmError as e:
        assert "unknown option" not in str(e)
        return
    assert isinstance(f, gb.Fit) and np.all(np.isfinite(f.beta_hat))

