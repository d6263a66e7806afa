"""Inference after the fit: confint (Wald, profile), profile, anova/lrt against lme4
(tests/reference/{cbpp,sleepstudy}_{confint,lrt}.json)."""

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference
from scipy.stats import chi2, norm

import glmmbayes as gb
from glmmbayes.errors import SpecError

PROFILE_TOL = 2e-3  # profile CI bounds: absolute, relative where |bound| >= 1
WALD_TOL = 1e-4
CHISQ_TOL = 1e-4  # relative where Chisq >= 1

CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", dict(family="binomial")),
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", dict(family="gaussian", REML=False)),
}
_FITS = {}


def fitted(case, formula=None, **kw):
    f0, data, kw0 = CASES[case]
    key = (case, formula, tuple(sorted(kw.items())))
    if key not in _FITS:
        _FITS[key] = gb.fit(formula or f0, gb.datasets.load(data), **{**kw0, **kw})
    return _FITS[key]


def close(a, b, tol):
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("case", list(CASES))
def test_profile_confint_matches_lme4(case):
    ref = load_reference(f"{case}_confint")
    ci = fitted(case).confint(method="profile")
    want = ref["confint"]["profile"]["ci"]
    assert list(ci.index) == [r["name"] for r in want]
    for r in want:
        assert close(ci.loc[r["name"], "lower"], r["lower"], PROFILE_TOL), (r, ci.loc[r["name"]])
        assert close(ci.loc[r["name"], "upper"], r["upper"], PROFILE_TOL), (r, ci.loc[r["name"]])
    assert ci.attrs["labels"] == ("2.5 %", "97.5 %")


def test_wald_confint_lmm_matches_lme4():
    ref = load_reference("sleepstudy_confint")
    ci = fitted("sleepstudy").confint(method="wald")
    for r in ref["confint"]["wald"]["ci"]:
        if r["lower"] is None:  # lme4: NA for variance parameters
            assert np.isnan(ci.loc[r["name"], "lower"]) and np.isnan(ci.loc[r["name"], "upper"])
        else:
            assert close(ci.loc[r["name"], "lower"], r["lower"], WALD_TOL)
            assert close(ci.loc[r["name"], "upper"], r["upper"], WALD_TOL)


def test_wald_confint_is_estimate_plus_minus_z_se():
    fit = fitted("cbpp")
    ci = fit.confint("wald", level=0.9, parm="beta_")
    z = norm.ppf(0.95)
    np.testing.assert_allclose(ci["lower"], fit.fixef - z * fit.se, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ci["upper"], fit.fixef + z * fit.se, rtol=0, atol=1e-12)
    ref = {r["name"]: r for r in load_reference("cbpp_confint")["confint"]["wald"]["ci"]}
    # lme4's bounds differ by its SEs (finite differences at a Nelder-Mead optimum, up to 1% off)
    lme4 = fit.confint("wald")
    assert lme4.loc[".sig01"].isna().all()
    for nm in fit.fixef.index:
        assert close(lme4.loc[nm, "lower"], ref[nm]["lower"], 5e-3)


def test_name_map_matches_lme4_and_varcorr():
    ref = load_reference("sleepstudy_confint")["confint"]["name_map"]
    nm = fitted("sleepstudy").name_map
    for r in ref:
        row = nm.loc[r["name"]]
        assert row["grp"] == r["grp"] and row["kind"] == r["kind"] and row["lme4_newname"] == r["lme4_newname"]
        assert (row["var1"] if isinstance(row["var1"], str) else None) == r["var1"]
        assert (row["var2"] if isinstance(row["var2"], str) else None) == r["var2"]


def test_profile_zeta_at_its_points():
    """ζ² at a profile point is the deviance increase: check it against an independent refit
    with the parameter fixed (the LMM slope held by an offset)."""
    fit = fitted("sleepstudy")
    prof = fit.profile(parm="Days")
    t = prof.zeta("Days")
    assert (np.diff(t["zeta"]) > 0).all()  # monotone
    x = float(t["value"].iloc[-1])
    d = gb.datasets.load("sleepstudy").assign(off=lambda df: x * df["Days"])
    held = gb.fit("Reaction ~ 1 + (Days | Subject)", d, family="gaussian", REML=False, offset="off")
    z2 = 2 * (fit.loglik - held.loglik)
    assert abs(t["zeta"].iloc[-1] ** 2 - z2) < 1e-5
    assert t["zeta"].abs().max() > np.sqrt(chi2.ppf(0.99, 6))  # walked to lme4's cutoff
    assert prof.table.columns[:2].tolist() == [".par", ".zeta"]


def test_profile_plot_and_confint():
    import matplotlib

    matplotlib.use("Agg")
    prof = fitted("cbpp").profile()
    fig = prof.plot()
    assert len([a for a in fig.axes if a.get_visible()]) == 5
    ci = prof.confint(0.95)
    ref = {r["name"]: r for r in load_reference("cbpp_confint")["confint"]["profile"]["ci"]}
    assert close(ci.loc[".sig01", "lower"], ref[".sig01"]["lower"], PROFILE_TOL)


def test_profile_progress_bar_can_be_silenced(capsys):
    """The bar over the parameters writes to stderr only when asked (and only after half a
    second); the profile is the same either way."""
    f = fitted("cbpp")
    quiet = f.profile(parm=".sig01", progress=False)
    assert capsys.readouterr().err == ""
    ci = f.confint(parm=".sig01", progress=False)
    assert capsys.readouterr().err == ""
    pd.testing.assert_frame_equal(quiet.table, f.profile(parm=".sig01").table)
    assert ci.loc[".sig01", "lower"] == quiet.confint(0.95).loc[".sig01", "lower"]


def test_profile_of_reml_fit_is_ml_profile():
    ml = fitted("sleepstudy").confint(parm=[".sigma", "Days"])
    reml = fitted("sleepstudy", REML=True).confint(parm=[".sigma", "Days"])
    pd.testing.assert_frame_equal(ml, reml, atol=1e-6)


def test_profile_boundary_and_poisson():
    """A variance at zero: the lower bound is the bound 0, as lme4 reports it."""
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"g": np.repeat(np.arange(12), 8), "x": rng.normal(size=96)})
    d["y"] = rng.poisson(np.exp(0.3 + 0.4 * d["x"]))
    with pytest.warns(gb.ConvergenceWarning, match="singular"):
        fit = gb.fit("y ~ x + (1 | g)", d, family="poisson")
    assert fit.varcorr["sdcor"][0] < 1e-3
    ci = fit.confint()
    assert ci.loc[".sig01", "lower"] == 0.0 and 0 < ci.loc[".sig01", "upper"] < 1
    assert ci.loc["x", "lower"] < fit.fixef["x"] < ci.loc["x", "upper"]


def test_confint_refusals():
    with pytest.raises(SpecError, match="parm"):
        fitted("cbpp").confint(parm="nope")
    with pytest.raises(SpecError, match="method"):
        fitted("cbpp").confint(method="bayes")
    with pytest.raises(SpecError, match="likelihood"):
        fitted("cbpp", method="pql").confint()


def test_confint_boot_delegates():
    fit = fitted("cbpp")
    ci = fit.confint("boot", nsim=20, seed=1)
    assert list(ci.columns) == ["lower", "upper"] and ".sig01" in ci.index


# ----------------------------------------------------------------------------- anova / lrt
def _lrt_fits(case):
    ref = load_reference(f"{case}_lrt")
    return ref, fitted(case, ref["formula0"]), fitted(case, ref["formula"])


@pytest.mark.parametrize("case", list(CASES))
def test_anova_matches_lme4(case):
    ref, m0, m1 = _lrt_fits(case)
    tab = gb.anova(m1, m0, names=["m1", "m0"])
    assert list(tab.index) == [r["model"] for r in ref["anova"]["rows"]]
    for r in ref["anova"]["rows"]:
        row = tab.loc[r["model"]]
        assert row["npar"] == r["npar"]
        for col in ("AIC", "BIC", "logLik", "deviance"):
            assert abs(row[col] - r[col]) < 2e-3, (col, row[col], r[col])  # lme4's optimum is ~3e-4 short
        if r["Chisq"] is not None:
            assert close(row["Chisq"], r["Chisq"], CHISQ_TOL), (row["Chisq"], r["Chisq"])
            assert row["Df"] == r["Df"]
            assert abs(row["Pr(>Chisq)"] - r["p"]) <= 1e-4 * r["p"] + 1e-9
            assert pd.isna(row["Pr(>Chisq) boundary"])  # no variance tested on its boundary
    res = gb.lrt(m0, m1)
    assert res.df == ref["anova"]["rows"][1]["Df"] and res.p_boundary is None


def test_lrt_boundary_mixture():
    a = fitted("sleepstudy", "Reaction ~ Days + (1 | Subject)")
    b = fitted("sleepstudy")
    res = gb.lrt(a, b)
    assert res.df == 2
    assert res.p_boundary == pytest.approx(0.5 * chi2.sf(res.chisq, 1) + 0.5 * chi2.sf(res.chisq, 2))
    assert res.p_boundary < res.p_value and "0.5 χ²_1 + 0.5 χ²_2" in res.boundary


def test_anova_refusals():
    m1 = fitted("cbpp")
    with pytest.raises(SpecError, match="quasi-likelihood"):
        gb.anova(fitted("cbpp", method="pql"), m1)
    with pytest.raises(SpecError, match="not nested"):
        gb.anova(fitted("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
                 gb.fit("cbind(incidence, size - incidence) ~ size + (1 | herd)", gb.datasets.load("cbpp"),
                        family="binomial"))
    half = gb.datasets.load("cbpp").iloc[:40]
    with pytest.raises(SpecError, match="observations"):
        gb.anova(m1, gb.fit("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", half, family="binomial"))
    r0 = fitted("sleepstudy", "Reaction ~ 1 + (Days | Subject)", REML=True)
    r1 = fitted("sleepstudy", REML=True)
    with pytest.raises(SpecError, match="REML"):
        gb.anova(r0, r1)
    ml = gb.anova(r0, r1, refit=True)  # lme4's default: refit by ML
    direct = gb.anova(fitted("sleepstudy", "Reaction ~ 1 + (Days | Subject)"), fitted("sleepstudy"))
    assert ml["Chisq"].iloc[1] == pytest.approx(direct["Chisq"].iloc[1], abs=1e-6)


def test_confint_boot_passes_its_arguments_to_the_bootstrap(monkeypatch):
    """The delegation itself, with a stand-in for fit.bootstrap: nsim, seed and options go to the
    bootstrap, level, kind and lme4's names of `parm` to its confint; rows keep lme4's names."""
    calls = {}

    class FakeResult:
        def confint(self, level, kind, parm):
            calls["confint"] = (level, kind, parm)
            return pd.DataFrame({"lower": [0.1] * len(parm), "upper": [0.9] * len(parm)}, index=parm)

    def fake_bootstrap(self, nsim, seed, **kw):
        calls["bootstrap"] = (nsim, seed, kw)
        return FakeResult()

    monkeypatch.setattr(gb.Fit, "bootstrap", fake_bootstrap, raising=False)
    ci = fitted("cbpp").confint("boot", level=0.9, parm=[".sig01", "period2"], nsim=7, seed=3,
                                boot_type="basic", parallel=False)
    assert calls["bootstrap"] == (7, 3, {"parallel": False})
    assert calls["confint"] == (0.9, "basic", [".sig01", "period2"])
    assert list(ci.index) == [".sig01", "period2"] and list(ci.columns) == ["lower", "upper"]
    assert ci.attrs["labels"] == ("5 %", "95 %") and ci.attrs["method"] == "boot (basic)"
    with pytest.raises(SpecError, match="boot_type"):
        fitted("cbpp").confint("boot", boot_type="bca")


def test_confint_boot_without_the_engine_says_so(monkeypatch):
    if hasattr(gb.Fit, "bootstrap"):
        monkeypatch.delattr(gb.Fit, "bootstrap")
    with pytest.raises(gb.FitError, match="bootstrap"):
        fitted("cbpp").confint("boot", nsim=5, seed=1)


@pytest.mark.parametrize("case", ["cbpp", "contraception_district", "grouseticks_poisson"])
def test_wald_intervals_use_the_exact_laplace_hessian(case):
    """Wald intervals are β̂ ± z se with se from the Hessian of the Laplace deviance. glmmTMB
    differentiates that deviance exactly (automatic differentiation); lme4's finite-difference
    Hessian is off by up to 1 % on cbpp, so glmmTMB is the reference for the standard errors."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "reference" / "glmmtmb_se.json").read_text())[case]
    data = gb.datasets.load(ref["data"])
    if "cHEIGHT" in ref["formula"]:
        data = data.assign(cHEIGHT=data["HEIGHT"] - data["HEIGHT"].mean())
    fit = gb.fit(ref["formula"], data, family=ref["family"])
    se = pd.Series(ref["glmmTMB"]["se"])
    np.testing.assert_allclose(fit.se[se.index], se, rtol=3e-4)
    ci = fit.confint(method="wald")
    z = 1.959963984540054
    beta = pd.Series(ref["glmmTMB"]["fixef"])
    np.testing.assert_allclose(ci.loc[se.index, ci.columns[0]], beta - z * se, atol=2e-4)
    np.testing.assert_allclose(ci.loc[se.index, ci.columns[1]], beta + z * se, atol=2e-4)


def test_the_default_reml_lmm_is_treated_as_reml():
    """Without REML=..., a gaussian LMM is a REML fit (lmer's default): anova refuses to compare
    REML criteria of different fixed effects, profiles refit by ML, and its InferenceData holds
    the variance parameters rather than claiming the ML normal approximation."""
    sleep = gb.datasets.load("sleepstudy")
    d0 = gb.fit("Reaction ~ 1 + (Days | Subject)", sleep)
    d1 = gb.fit("Reaction ~ Days + (Days | Subject)", sleep)
    assert d0.spec.REML is None and d0.spec.reml
    with pytest.raises(SpecError, match="REML"):
        gb.anova(d0, d1)
    direct = gb.anova(fitted("sleepstudy", "Reaction ~ 1 + (Days | Subject)"), fitted("sleepstudy"))
    assert gb.anova(d0, d1, refit=True)["Chisq"].iloc[1] == pytest.approx(direct["Chisq"].iloc[1], abs=1e-6)
    ml = fitted("sleepstudy").confint(parm=[".sigma", "Days"])
    pd.testing.assert_frame_equal(d1.confint(parm=[".sigma", "Days"]), ml, atol=1e-6)
    assert "held at their estimates" in str(d1.idata.attrs)
