"""The `Fit` API on cbpp (binomial GLMM) and sleepstudy (LMM): shapes, names, R's level order,
likelihood summaries, fitted/residuals/predict/simulate, the printed summary, and the sleepstudy
conditional modes checked against an independent dense computation and lme4's values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes import DataError

CBPP_F = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
SLEEP_F = "Reaction ~ Days + (Days | Subject)"
REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def cbpp():
    return gb.datasets.load("cbpp")


@pytest.fixture(scope="module")
def sleep():
    return gb.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def cfit(cbpp):
    return gb.fit(CBPP_F, cbpp, family="binomial")


@pytest.fixture(scope="module")
def sfit(sleep):
    return gb.fit(SLEEP_F, sleep, family="gaussian", REML=False)


CBPP_FIXEF = ["(Intercept)", "period2", "period3", "period4"]
SLEEP_FIXEF = ["(Intercept)", "Days"]
HERDS = [str(i) for i in range(1, 16)]
SUBJECTS = ["308", "309", "310", "330", "331", "332", "333", "334", "335", "337",
            "349", "350", "351", "352", "369", "370", "371", "372"]


# ----------------------------------------------------------------------------- parameters


def test_cbpp_parameter_shapes_and_names(cfit):
    assert list(cfit.fixef.index) == CBPP_FIXEF
    assert list(cfit.se.index) == CBPP_FIXEF
    assert cfit.vcov.shape == (4, 4)
    assert list(cfit.vcov.index) == CBPP_FIXEF and list(cfit.vcov.columns) == CBPP_FIXEF
    np.testing.assert_allclose(cfit.vcov.to_numpy(), cfit.vcov.to_numpy().T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(cfit.se.to_numpy(), np.sqrt(np.diag(cfit.vcov.to_numpy())))
    assert list(cfit.theta.index) == ["herd.(Intercept)"]
    assert cfit.sigma == 1.0


def test_sleep_parameter_shapes_and_names(sfit):
    assert list(sfit.fixef.index) == SLEEP_FIXEF
    assert sfit.vcov.shape == (2, 2)
    assert list(sfit.theta.index) == ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]


def test_cbpp_varcorr(cfit):
    vc = cfit.varcorr
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert len(vc) == 1  # no residual row for binomial
    row = vc.iloc[0]
    assert row.grp == "herd" and row.var1 == "(Intercept)" and pd.isna(row.var2)
    assert row.sdcor == pytest.approx(cfit.theta.iloc[0])  # GLMM: Λ is absolute
    assert row.vcov == pytest.approx(row.sdcor**2)


def test_sleep_varcorr_has_correlation_and_residual_rows(sfit):
    vc = sfit.varcorr
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(vc.grp) == ["Subject", "Subject", "Subject", "Residual"]
    assert list(vc.var1[:3]) == ["(Intercept)", "Days", "(Intercept)"]
    assert vc.var2[2] == "Days" and pd.isna(vc.var2[0]) and pd.isna(vc.var2[1])
    assert pd.isna(vc.var1[3]) and pd.isna(vc.var2[3])
    sd = vc.sdcor.to_numpy()
    np.testing.assert_allclose(vc.vcov[:2], sd[:2] ** 2)
    assert vc.sdcor[2] == pytest.approx(vc.vcov[2] / (sd[0] * sd[1]))  # correlation
    assert vc.vcov[3] == pytest.approx(sfit.sigma**2) and vc.sdcor[3] == pytest.approx(sfit.sigma)
    # LMM: Σ = σ² Λ Λ'
    T = np.zeros((2, 2))
    T[np.tril_indices(2)] = sfit.theta.to_numpy()
    S = sfit.sigma**2 * T @ T.T
    np.testing.assert_allclose([vc.vcov[0], vc.vcov[1], vc.vcov[2]], [S[0, 0], S[1, 1], S[0, 1]], rtol=1e-10)
    # lme4 (ML): 23.78, 5.717, 0.081, 25.59
    ref = json.loads((REFERENCE / "sleepstudy_lmm.json").read_text())["laplace"]["varcorr"]
    np.testing.assert_allclose(vc.sdcor, [r["sdcor"] for r in ref], rtol=2e-3, atol=2e-3)


# ----------------------------------------------------------------------------- random effects


def test_ranef_frames_in_r_level_order(cfit, sfit):
    r = cfit.ranef
    assert list(r) == ["herd"]
    assert isinstance(r["herd"], pd.DataFrame)
    assert list(r["herd"].index) == HERDS and list(r["herd"].columns) == ["(Intercept)"]
    assert cfit.ranef_condvar["herd"].shape == (15, 1, 1)
    s = sfit.ranef["Subject"]
    assert list(s.index) == SUBJECTS and list(s.columns) == SLEEP_FIXEF
    cv = sfit.ranef_condvar["Subject"]
    assert cv.shape == (18, 2, 2)
    np.testing.assert_allclose(cv, np.transpose(cv, (0, 2, 1)), atol=1e-10)
    assert np.all(np.linalg.eigvalsh(cv) > 0)
    tidy = sfit.ranef_frame()
    assert list(tidy.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(tidy) == 36 and list(tidy.grp[:18]) == SUBJECTS


def test_cbpp_ranef_matches_lme4(cfit):
    ref = json.loads((REFERENCE / "cbpp_herd.json").read_text())["laplace"]["ranef_head"]["herd"]
    got = cfit.ranef["herd"]["(Intercept)"].to_numpy()[:5]
    np.testing.assert_allclose(got, [r["(Intercept)"] for r in ref], atol=2e-3)


def test_sleep_ranef_and_condvar_dense_check(sfit, sleep):
    """b = (Z'Z + σ²Σ⁻¹)⁻¹ Z'(y - Xβ), Var(b | y) = σ²(Z'Z + σ²Σ⁻¹)⁻¹ at the fitted Σ, σ, β."""
    vc = sfit.varcorr
    S = np.array([[vc.vcov[0], vc.vcov[2]], [vc.vcov[2], vc.vcov[1]]])
    s2 = sfit.sigma**2
    subj = sleep.Subject.astype(str).to_numpy()
    days = sleep.Days.to_numpy(dtype=float)
    y = sleep.Reaction.to_numpy()
    n, m = len(y), len(SUBJECTS)
    Z = np.zeros((n, 2 * m))
    for j, s in enumerate(SUBJECTS):
        rows = subj == s
        Z[rows, 2 * j] = 1.0
        Z[rows, 2 * j + 1] = days[rows]
    X = np.column_stack([np.ones(n), days])
    beta = sfit.fixef.to_numpy()
    P = np.kron(np.eye(m), np.linalg.inv(S))
    A = Z.T @ Z + s2 * P
    b = np.linalg.solve(A, Z.T @ (y - X @ beta)).reshape(m, 2)
    V = s2 * np.linalg.inv(A)
    Vb = np.stack([V[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] for j in range(m)])
    np.testing.assert_allclose(sfit.ranef["Subject"].to_numpy(), b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sfit.ranef_condvar["Subject"], Vb, rtol=1e-6)
    # the same β is the GLS estimate given Σ, σ (another independent check)
    Vy = s2 * np.eye(n) + Z @ np.kron(np.eye(m), S) @ Z.T
    W = np.linalg.solve(Vy, X)
    np.testing.assert_allclose(beta, np.linalg.solve(X.T @ W, W.T @ y), rtol=1e-8)
    np.testing.assert_allclose(sfit.vcov.to_numpy(), np.linalg.inv(X.T @ W), rtol=1e-5)
    # lme4 (ML fit): ranef(fit)$Subject["308", ] = 2.8158, 9.0755
    b308 = sfit.ranef["Subject"].loc["308"].to_numpy()
    np.testing.assert_allclose(b308, [2.8157890197, 9.0755067776], rtol=1e-3)
    # conditional sds of subject 308 from the dense formula
    sd308 = np.sqrt(np.diag(Vb[0]))
    tidy = sfit.ranef_frame()
    got = tidy[(tidy.grp == "308")].condsd.to_numpy()
    np.testing.assert_allclose(got, sd308, rtol=1e-6)


# ----------------------------------------------------------------------------- likelihood summaries


@pytest.mark.parametrize("which, npar, nobs, ngrps, case",
                         [("c", 5, 56, {"herd": 15}, "cbpp_herd"), ("s", 6, 180, {"Subject": 18}, "sleepstudy_lmm")])
def test_loglik_aic_bic(cfit, sfit, which, npar, nobs, ngrps, case):
    fit = cfit if which == "c" else sfit
    assert fit.npar == npar and fit.nobs == nobs and fit.ngrps == ngrps
    assert fit.df_resid == nobs - npar
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * npar, rel=1e-12)
    assert fit.bic == pytest.approx(-2 * fit.loglik + math.log(nobs) * npar, rel=1e-12)
    ref = json.loads((REFERENCE / f"{case}.json").read_text())["laplace"]
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-3)
    assert fit.aic == pytest.approx(ref["AIC"], abs=2e-3)
    assert fit.bic == pytest.approx(ref["BIC"], abs=2e-3)


def test_lmm_deviance_is_minus_two_loglik(sfit):
    assert sfit.deviance == pytest.approx(-2 * sfit.loglik, rel=1e-12)


# ----------------------------------------------------------------------------- fitted values / residuals


def test_fitted_binomial_in_unit_interval(cfit, cbpp):
    fv = cfit.fitted
    assert isinstance(fv, pd.Series) and len(fv) == 56
    assert np.all((fv > 0) & (fv < 1))
    np.testing.assert_allclose(fv.to_numpy(), 1.0 / (1.0 + np.exp(-cfit.linear_predictor())))


def test_binomial_residual_types(cfit, cbpp):
    y = (cbpp.incidence / cbpp["size"]).to_numpy()
    n = cbpp["size"].to_numpy(dtype=float)
    mu = cfit.fitted.to_numpy()
    eta = cfit.linear_predictor()
    np.testing.assert_allclose(cfit.residuals("response"), y - mu, atol=1e-12)
    np.testing.assert_allclose(cfit.residuals("pearson"), (y - mu) / np.sqrt(mu * (1 - mu) / n), rtol=1e-10)
    np.testing.assert_allclose(cfit.residuals("working"), (y - mu) / (np.exp(eta) / (1 + np.exp(eta)) ** 2), rtol=1e-8)
    dev = cfit.residuals()  # deviance residuals by default
    assert dev.name == "deviance residuals"
    np.testing.assert_array_equal(np.sign(dev), np.sign(y - mu))
    assert float(np.sum(dev**2)) == pytest.approx(cfit.deviance, rel=1e-10)
    with pytest.raises(ValueError, match="residual type"):
        cfit.residuals("raw")


def test_lmm_residuals(sfit, sleep):
    r = sleep.Reaction.to_numpy() - sfit.fitted.to_numpy()
    for ty in ("deviance", "response", "pearson", "working"):
        np.testing.assert_allclose(sfit.residuals(ty), r, atol=1e-9)


# ----------------------------------------------------------------------------- predict


def test_predict_newdata_equals_predict(cfit, cbpp):
    eta = cfit.linear_predictor()
    np.testing.assert_allclose(cfit.predict(), eta, rtol=1e-12)
    np.testing.assert_allclose(cfit.predict(newdata=cbpp), eta, rtol=1e-12)
    np.testing.assert_allclose(cfit.predict(newdata=cbpp, type="response"), cfit.fitted.to_numpy(), rtol=1e-12)
    # a subset of rows in another order
    sub = cbpp.iloc[[40, 3, 17]]
    np.testing.assert_allclose(cfit.predict(newdata=sub), eta[[40, 3, 17]], rtol=1e-12)


def test_predict_population_level(cfit, cbpp):
    X = cfit.design.X
    xb = X @ cfit.fixef.to_numpy()
    np.testing.assert_allclose(cfit.predict(re_form="~0"), xb, rtol=1e-12)
    np.testing.assert_allclose(cfit.predict(newdata=cbpp, re_form="~0"), xb, rtol=1e-12)
    np.testing.assert_allclose(cfit.predict(re_form="NA", type="response"), 1 / (1 + np.exp(-xb)), rtol=1e-12)
    # by hand from the coefficients
    b = cfit.fixef
    per = cbpp.period.astype(str).to_numpy()
    hand = b["(Intercept)"] + np.select([per == "2", per == "3", per == "4"], [b.period2, b.period3, b.period4], 0.0)
    np.testing.assert_allclose(cfit.predict(re_form="~0"), hand, rtol=1e-12)


def test_predict_population_level_includes_offset(cbpp):
    fit = gb.fit("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson")
    xb = fit.design.X @ fit.fixef.to_numpy() + np.log(cbpp["size"].to_numpy(dtype=float))
    np.testing.assert_allclose(fit.predict(re_form="~0"), xb, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(newdata=cbpp, re_form="~0"), xb, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(newdata=cbpp), fit.linear_predictor(), rtol=1e-12)


def test_predict_unseen_level(cfit, cbpp):
    nd = cbpp.iloc[:4].copy()
    nd["herd"] = ["1", "1", "99", "3"]
    with pytest.raises(DataError) as ei:
        cfit.predict(newdata=nd)
    msg = str(ei.value)
    assert "'99'" in msg and "'herd'" in msg and "row 2" in msg and "allow_new_levels" in msg
    p = cfit.predict(newdata=nd, allow_new_levels=True)
    eta = cfit.linear_predictor()
    np.testing.assert_allclose(p[[0, 1]], eta[[0, 1]], rtol=1e-12)
    np.testing.assert_allclose(p[2], cfit.predict(re_form="~0")[2], rtol=1e-12)  # population level
    b3 = cfit.ranef["herd"].loc["3", "(Intercept)"]
    assert p[3] == pytest.approx(cfit.predict(re_form="~0")[3] + b3, rel=1e-12)


def test_predict_sleep_newdata(sfit, sleep):
    np.testing.assert_allclose(sfit.predict(newdata=sleep), sfit.fitted.to_numpy(), rtol=1e-12)
    nd = pd.DataFrame({"Days": [0.0, 10.0], "Subject": ["308", "308"]})
    b = sfit.fixef.to_numpy() + sfit.ranef["Subject"].loc["308"].to_numpy()
    np.testing.assert_allclose(sfit.predict(newdata=nd), [b[0], b[0] + 10 * b[1]], rtol=1e-12)


# ----------------------------------------------------------------------------- simulate


def test_simulate_binomial(cfit, cbpp):
    s1 = cfit.simulate(nsim=3, seed=1)
    s2 = cfit.simulate(nsim=3, seed=1)
    assert s1.shape == (56, 3)
    pd.testing.assert_frame_equal(s1, s2)
    assert not s1.equals(cfit.simulate(nsim=3, seed=2))
    v = s1.to_numpy()
    size = cbpp["size"].to_numpy()[:, None]
    assert np.all(v == np.round(v)) and np.all(v >= 0) and np.all(v <= size)


def test_simulate_lmm(sfit):
    s = sfit.simulate(nsim=3, seed=1)
    assert s.shape == (180, 3)
    pd.testing.assert_frame_equal(s, sfit.simulate(nsim=3, seed=1))
    assert abs(s.to_numpy().mean() - sfit.fitted.mean()) < 40


# ----------------------------------------------------------------------------- printing


@pytest.mark.parametrize("which", ["c", "s"])
def test_print_has_lme4_blocks(cfit, sfit, which):
    fit = cfit if which == "c" else sfit
    text = str(fit)
    for block in ("Random effects:", "Fixed effects:", "Number of obs", "Formula:", "Family:"):
        assert block in text
    assert text == fit.summary()
    for nm in fit.fixef.index:
        assert nm in text
    if which == "c":
        assert "Number of obs: 56, groups:  herd, 15" in text and "z value" in text
    else:
        assert "Number of obs: 180, groups:  Subject, 18" in text and "Residual" in text and "t value" in text
    assert "logLik" in repr(fit) or "Fit" in repr(fit)
