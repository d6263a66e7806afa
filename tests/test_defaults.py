"""The defaults an lme4 user expects: gaussian without a family, REML for the gaussian LMM,
case-insensitive family names, numpy integers as options, formula transforms carried into
predict, and predict's type errors."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes import methods
from glmmbayes.errors import DataError, SpecError

REFERENCE = Path(__file__).parent / "reference"
SLEEP_F = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return gb.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def contraception():
    return gb.datasets.load("Contraception")


def _ref(name):
    return json.loads((REFERENCE / f"{name}.json").read_text())


# ----------------------------------------------------------------------------- family and REML


def test_spec_defaults_are_lmers():
    s = gb.Spec(SLEEP_F)
    assert s.family_name == "gaussian" and s.link_name == "identity"
    assert s.REML is None and s.reml
    assert not gb.Spec(SLEEP_F, REML=False).reml
    assert gb.Spec(SLEEP_F, REML=np.True_).REML is True
    # ML for everything that is not the gaussian/identity LMM
    assert not gb.Spec("y ~ x + (1 | g)", family="binomial").reml
    assert not gb.Spec("y ~ x + (1 | g)", link="log").reml
    assert not gb.Spec("y ~ x + (1 | g)", known_dispersion=1.0).reml
    assert gb.Spec("y ~ x + (1 | g)", family="poisson", REML=True).reml
    with pytest.raises(SpecError, match=r"REML must be True, False or None.*'yes'"):
        gb.Spec(SLEEP_F, REML="yes")


def test_formula_without_family_is_the_reml_lmm(sleep):
    """gb.fit(formula, data) is lmer(formula, data): REML, lme4's estimates (lme4 1.1)."""
    ref = _ref("sleepstudy_reml")
    fit = gb.fit(SLEEP_F, sleep)
    assert fit.spec.family_name == "gaussian" and fit.likelihood == "reml"
    np.testing.assert_allclose(fit.fixef[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(fit.se[list(ref["se"])], list(ref["se"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.theta[list(ref["theta"])], list(ref["theta"].values()), rtol=1e-4, atol=1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert fit.reml_criterion == pytest.approx(ref["REMLcrit"], abs=1e-5)
    text = str(fit)
    assert "REML criterion at convergence: 1743.6283" in text
    assert "Linear mixed model fit by REML" in text


def test_reml_false_is_ml(sleep):
    ref = _ref("sleepstudy_lmm")["laplace"]
    fit = gb.fit(SLEEP_F, sleep, REML=False)
    assert fit.reml_criterion is None
    np.testing.assert_allclose(fit.se[list(ref["se"])], list(ref["se"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.theta[list(ref["theta"])], list(ref["theta"].values()), rtol=1e-4, atol=1e-5)
    assert "REML criterion" not in str(fit)


def test_default_reml_reaches_every_reml_method_and_not_the_others(sleep):
    """pql and agq fit the LMM by REML too (exact LMM); hmc has no REML variant and samples the
    posterior under the default, but refuses an explicit REML=True."""
    ref = _ref("sleepstudy_reml")
    c = gb.compare(SLEEP_F, sleep, methods=["laplace", "pql", "agq"], progress=False)
    for m in ("laplace", "pql", "agq"):
        np.testing.assert_allclose(c.fits[m].theta[list(ref["theta"])], list(ref["theta"].values()), rtol=1e-4, atol=1e-5)
    design = gb.design(SLEEP_F, sleep)
    methods.route("hmc", design, methods.checked_options("hmc", {}))  # no error
    with pytest.raises(SpecError, match="no REML variant"):
        methods.route("hmc", gb.design(SLEEP_F, sleep, REML=True), methods.checked_options("hmc", {}))


@pytest.mark.parametrize("name, expected", [("Poisson", "poisson"), ("GAUSSIAN", "gaussian"),
                                            ("Binomial", "binomial"), ("gamma", "Gamma"), ("NBinom2", "nbinom2")])
def test_family_names_are_case_insensitive(name, expected):
    assert gb.Spec("y ~ x + (1 | g)", family=name).family_name == expected


# ----------------------------------------------------------------------------- numpy integers


def test_numpy_integers_are_accepted_as_integer_options():
    cbpp = gb.datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    a = gb.fit(f, cbpp, family="binomial", method="agq", nAGQ=np.int64(5))
    b = gb.fit(f, cbpp, family="binomial", method="agq", nAGQ=5)
    assert a.nAGQ == 5 and type(a.nAGQ) is int
    np.testing.assert_array_equal(a.fixef, b.fixef)
    opts = methods.checked_options("hmc", {"draws": np.int64(200), "tune": np.uint16(100),
                                           "chains": np.int32(2), "seed": np.int64(7)})
    assert opts["draws"] == 200 and opts["chains"] == 2 and type(opts["draws"]) is int
    with pytest.raises(SpecError, match="draws must be an integer"):
        methods.checked_options("hmc", {"draws": np.float64(200)})


# ----------------------------------------------------------------------------- predict type errors


def test_predict_names_a_type_difference(contraception):
    d = contraception
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = gb.fit("use ~ age + urban + livch + (1 | district)", d, family="binomial")
    nd = d.head(5).assign(urban=(d.urban.head(5) == "Y").astype(int))
    with pytest.raises(DataError, match=r"'urban' was a factor \(levels 'N', 'Y'\) when fitting but newdata has "
                                        r"integers.*newdata\['urban'\]"):
        fit.predict(nd)
    # codes 0..3 for levels '0', '1', '2', '3+': three match by text, the fourth says why
    nd = d.head(40).assign(livch=d.livch.head(40).cat.codes.astype(int))
    with pytest.raises(DataError, match=r"'livch' has level '3'.*newdata has integers where the fit had a factor"):
        fit.predict(nd)
    with pytest.raises(DataError, match=r"'age' was numeric when fitting but newdata has strings"):
        fit.predict(d.head(5).assign(age=d.age.head(5).astype(str)))
    # integer district ids are the same levels ('1', '2', ...): accepted
    same = fit.predict(d.head(5).assign(district=d.district.head(5).astype(int)))
    np.testing.assert_allclose(same, fit.predict(d.head(5)), rtol=1e-12)


# ----------------------------------------------------------------------------- transforms in a fit


def _r_poly(x: np.ndarray, degree: int) -> np.ndarray:
    """R's poly(x, degree): the orthonormal columns of the centred powers, each with a
    positive coefficient on its highest power (QR with the sign of R's diagonal)."""
    V = np.vander(x - x.mean(), degree + 1, increasing=True)
    Q, R = np.linalg.qr(V)
    return (Q * np.sign(np.diag(R)))[:, 1:]


def _quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gb.fit(*args, **kw)


def test_poly_fit_equals_the_fit_on_r_poly_columns(contraception):
    d = contraception
    fit = _quiet_fit("use ~ poly(age, 2) + urban + (1 | district)", d, family="binomial")
    P = _r_poly(d.age.to_numpy(), 2)
    np.testing.assert_allclose(fit.design.X[:, 1:3], P, rtol=1e-10, atol=1e-13)
    manual = _quiet_fit("use ~ p1 + p2 + urban + (1 | district)", d.assign(p1=P[:, 0], p2=P[:, 1]),
                        family="binomial")
    assert list(fit.fixef.index) == ["(Intercept)", "poly(age, 2)1", "poly(age, 2)2", "urbanY"]
    np.testing.assert_allclose(fit.fixef.to_numpy(), manual.fixef.to_numpy(), rtol=1e-6)
    assert fit.loglik == pytest.approx(manual.loglik, rel=1e-9)
    # new data: a subset predicts as the same rows of the whole data (the fitted recurrence is
    # kept, not recomputed on the subset), and new ages as R's predict.poly does
    full = fit.predict(d)
    rows = [5, 700, 1200, 33]
    np.testing.assert_allclose(fit.predict(d.iloc[rows]), full.iloc[rows], rtol=1e-12)
    nd = pd.DataFrame({"age": [-10.0, 0.0, 15.0], "urban": ["Y", "N", "Y"], "district": ["1", "2", "3"]})
    Pn = _predict_poly(d.age.to_numpy(), nd.age.to_numpy())
    eta = fit.fixef.iloc[0] + Pn @ fit.fixef.iloc[1:3].to_numpy() + fit.fixef["urbanY"] * (nd.urban == "Y")
    eta += fit.ranef["district"].loc[nd.district, "(Intercept)"].to_numpy()
    np.testing.assert_allclose(fit.predict(nd), eta, rtol=1e-10)


def _predict_poly(x: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Degree-2 R poly evaluated at new points: the training basis is a linear map of the
    centred powers, so solve for it on the training data and apply it to the new powers."""
    V = np.vander(x - x.mean(), 3, increasing=True)
    coef = np.linalg.lstsq(V, _r_poly(x, 2), rcond=None)[0]
    return np.vander(new - x.mean(), 3, increasing=True) @ coef


def test_scale_fit_equals_the_fit_on_the_scaled_column(contraception):
    d = contraception
    fit = _quiet_fit("use ~ scale(age) + urban + (1 | district)", d, family="binomial")
    z = (d.age - d.age.mean()) / d.age.std(ddof=1)  # R's scale(): sd with n - 1
    manual = _quiet_fit("use ~ z + urban + (1 | district)", d.assign(z=z), family="binomial")
    np.testing.assert_allclose(fit.fixef.to_numpy(), manual.fixef.to_numpy(), rtol=1e-6)
    rows = [0, 1, 999]
    np.testing.assert_allclose(fit.predict(d.iloc[rows]), fit.predict(d).iloc[rows], rtol=1e-12)
    nd = d.iloc[rows].assign(age=[-20.0, 0.0, 30.0])
    np.testing.assert_allclose(fit.predict(nd), manual.predict(nd.assign(z=(nd.age - d.age.mean()) / d.age.std(ddof=1))),
                               rtol=1e-6)


def test_interaction_names_follow_first_appearance():
    """Epilepsy-like data: y ~ trt + lbase * trt names trtprogabide:lbase, as lme4 does
    (R orders the variables of an interaction by their first appearance in the formula)."""
    rng = np.random.default_rng(59)
    n = 59
    d = pd.DataFrame({"subject": np.repeat([f"s{i}" for i in range(n)], 4),
                      "trt": np.repeat(rng.choice(["placebo", "progabide"], n), 4),
                      "lbase": np.repeat(rng.normal(0, 0.6, n), 4)})
    b = np.repeat(rng.normal(0, 0.5, n), 4)
    d["y"] = rng.poisson(np.exp(1.5 + 0.9 * d.lbase - 0.3 * (d.trt == "progabide") + b))
    fit = _quiet_fit("y ~ trt + lbase * trt + (1 | subject)", d, family="poisson")
    assert list(fit.fixef.index) == ["(Intercept)", "trtprogabide", "lbase", "trtprogabide:lbase"]
    col = fit.design.X[:, 3]
    np.testing.assert_array_equal(col, d.lbase.to_numpy() * (d.trt == "progabide").to_numpy())
    other = _quiet_fit("y ~ lbase * trt + (1 | subject)", d, family="poisson")
    assert list(other.fixef.index) == ["(Intercept)", "lbase", "trtprogabide", "lbase:trtprogabide"]
    assert other.loglik == pytest.approx(fit.loglik, rel=1e-9)
    assert re.search(r"trtprogabide:lbase", str(fit))


def test_cbind_response_without_family_is_binomial():
    """A two-column response fits only the binomial family, so it is the default there (the
    gaussian default applies to every other response)."""
    cbpp = gb.datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    assert gb.Spec(f).fam.name == "binomial" and gb.Spec("y ~ x + (1 | g)").fam.name == "gaussian"
    np.testing.assert_array_equal(gb.fit(f, cbpp).fixef, gb.fit(f, cbpp, family="binomial").fixef)
    with pytest.raises(DataError, match="binomial family only"):
        gb.fit(f, cbpp, family="poisson")
