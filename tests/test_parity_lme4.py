"""Parity with lme4::glmer / glmmTMB on the eight reference cases (Laplace and nAGQ = 0).

Each number comes from the R call recorded in tests/reference/<case>.json, e.g.
glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial) for cbpp_herd.
Where we reach a higher log-likelihood than lme4 the tests assert it and compare the
estimates with the better of lme4 and glmmTMB (the same optimum) instead.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from conftest import load_reference, reference_data
from tolerances import FIXEF_REL, LMM_DEVIANCE_ABS, LOGLIK_ABS, SAME_OPTIMUM_ABS, SDCOR_ABS, SE_REL

CASES = [
    "cbpp_herd",
    "cbpp_herd_obs",
    "contraception_district",
    "contraception_urban_slope",
    "bacteria_pql",
    "grouseticks_nested",
    "verbagg_crossed",
    "sleepstudy_lmm",
    "guimmun_nested",
]

_FITS: dict = {}


def fitted(case: str, nagq: int):
    """Fit once per session: several tests inspect the same fit."""
    key = (case, nagq)
    if key not in _FITS:
        ref = load_reference(case)
        spec = gb.Spec(ref["formula"], family=ref["family"], link=ref["link"], REML=False)  # lme4 ML references
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gb.ConvergenceWarning)
            _FITS[key] = gb.fit(spec, reference_data(ref["data"]), nAGQ=nagq)
    return _FITS[key]


def _rel_err(ours: pd.Series, theirs: dict) -> pd.Series:
    t = pd.Series(theirs)
    o = ours[t.index]
    return (o - t).abs() / np.maximum(t.abs(), 1.0)


def _at_optimum(ref, key, fit) -> dict:
    """The reference block at our optimum: lme4's, or glmmTMB's where lme4 stopped short of it
    (then our log-likelihood must be the higher one, and glmmTMB's must be ours)."""
    r = ref[key]
    if abs(fit.loglik - r["logLik"]) < SAME_OPTIMUM_ABS:
        return r
    assert fit.loglik > r["logLik"], "different optimum must be a better one"
    assert key == "laplace" and abs(fit.loglik - ref["glmmtmb"]["logLik"]) < SAME_OPTIMUM_ABS
    return ref["glmmtmb"]


def _variants(case):
    ref = load_reference(case)
    return [k for k in ("laplace", "nagq0") if k in ref]


PARAMS = [(c, k) for c in CASES for k in _variants(c)]


@pytest.mark.parametrize("case,key", PARAMS)
def test_loglik_at_least_peers(case, key):
    ref = load_reference(case)
    fit = fitted(case, 1 if key == "laplace" else 0)
    peers = [ref[key]["logLik"]]
    if key == "laplace" and "glmmtmb" in ref:
        peers.append(ref["glmmtmb"]["logLik"])  # glmmTMB fits the Laplace criterion too
    assert fit.loglik >= max(peers) - LOGLIK_ABS, (fit.loglik, peers)


@pytest.mark.parametrize("case,key", PARAMS)
def test_fixef_and_se(case, key):
    ref = load_reference(case)
    r = ref[key]
    fit = fitted(case, 1 if key == "laplace" else 0)
    assert list(fit.fixef.index) == list(r["fixef"]), "coefficient names and order as lme4"
    best = _at_optimum(ref, key, fit)
    assert _rel_err(fit.fixef, best["fixef"]).max() < FIXEF_REL
    se = best.get("se", r["se"])  # glmmTMB's where stored, else lme4's (the same optimum up to 1e-2)
    se_ratio = fit.se[list(se)] / pd.Series(se)
    assert (se_ratio - 1).abs().max() < SE_REL, se_ratio


@pytest.mark.parametrize("case,key", PARAMS)
def test_variance_components(case, key):
    ref = load_reference(case)
    r = ref[key]
    fit = fitted(case, 1 if key == "laplace" else 0)
    vc = fit.varcorr
    for row in _at_optimum(ref, key, fit)["varcorr"]:
        sel = (vc["grp"] == row["grp"]) & (
            vc["var1"].isna() if row["var1"] is None else vc["var1"] == row["var1"]
        ) & (vc["var2"].isna() if row["var2"] is None else vc["var2"] == row["var2"])
        assert sel.sum() == 1, row
        assert abs(vc.loc[sel, "sdcor"].iloc[0] - row["sdcor"]) < SDCOR_ABS, (row, vc[sel])
    assert list(fit.theta.index) == list(r["theta"]), "theta names and order as lme4"
    assert fit.ngrps == r["ngrps"]
    assert fit.nobs == r["nobs"]


@pytest.mark.parametrize("case,key", PARAMS)
def test_conditional_modes(case, key):
    ref = load_reference(case)
    fit = fitted(case, 1 if key == "laplace" else 0)
    for grp, rows in _at_optimum(ref, key, fit)["ranef_head"].items():
        theirs = pd.DataFrame(rows)
        if "_row" in theirs:  # level labels given: match by label
            ours = fit.ranef[grp].loc[theirs.pop("_row").tolist()]
        else:
            ours = fit.ranef[grp].iloc[: len(rows)]
        # modes move with the estimates: compare on the scale of the random-effect sd
        sd = fit.varcorr.set_index(["grp", "var1"]).loc[grp, "sdcor"].max()
        assert np.max(np.abs(ours[theirs.columns].to_numpy() - theirs.to_numpy())) < 0.02 * max(sd, 1)


def test_better_optimum_than_lme4_is_reported():
    """cbpp (1 | herd): lme4 stops at logLik -92.02657; glmmTMB and we reach -92.02628."""
    ref = load_reference("cbpp_herd")
    fit = fitted("cbpp_herd", 1)
    assert fit.loglik > ref["laplace"]["logLik"] + 1e-4
    assert abs(fit.loglik - ref["glmmtmb"]["logLik"]) < 1e-5


def test_guimmun_lme4_stops_short():
    """guImmun, mothers within communities: lme4 stops at logLik -1355.746 (max|grad| 0.61);
    glmmTMB and we reach -1355.701."""
    ref = load_reference("guimmun_nested")
    fit = fitted("guimmun_nested", 1)
    assert fit.loglik > ref["laplace"]["logLik"] + 0.04
    assert abs(fit.loglik - ref["glmmtmb"]["logLik"]) < 1e-4
    assert fit.converged, fit.messages


def test_sleepstudy_ml_deviance():
    ref = load_reference("sleepstudy_lmm")
    fit = fitted("sleepstudy_lmm", 1)
    assert abs(fit.deviance - ref["laplace"]["deviance"]) < LMM_DEVIANCE_ABS
    assert abs(fit.sigma - 25.5919070365) < 1e-4  # lme4's sigma(fit), ML


def test_sleepstudy_reml_criterion():
    ref = load_reference("sleepstudy_reml")
    spec = gb.Spec(ref["formula"], family="gaussian", REML=True)
    fit = gb.fit(spec, gb.datasets.load("sleepstudy"))
    assert abs(fit.deviance - ref["REMLcrit"]) < LMM_DEVIANCE_ABS
    assert _rel_err(fit.fixef, ref["fixef"]).max() < 1e-6
    assert (fit.se[list(ref["se"])] / pd.Series(ref["se"]) - 1).abs().max() < 1e-4
    assert np.max(np.abs(fit.theta.to_numpy() - np.array(list(ref["theta"].values())))) < 1e-4


def test_no_spurious_convergence_messages():
    """lme4 warns on Contraception and grouseticks about scaling; whitened β leaves no such problem."""
    for case in ("contraception_district", "grouseticks_nested", "verbagg_crossed", "guimmun_nested"):
        fit = fitted(case, 1)
        assert fit.converged, fit.messages
        assert not [m for m in fit.messages if "failed" in m], fit.messages


@pytest.mark.parametrize("case", ["oats_nested", "oats_vector", "salamanders_crossed"])
@pytest.mark.parametrize("reml", [False, True])
def test_small_multi_term_lmms_match_lme4(case, reml):
    """Nested, crossed and vector-beside-scalar terms of a small LMM (the dense cross-product
    objective), ML and REML, against lmer (benchmarks/r/reference_small_lmm.R). The vector model
    is singular (the slope's own θ at 0) in both."""
    ref = load_reference("small_lmm")[f"{case}_{'reml' if reml else 'ml'}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = gb.fit(gb.Spec(ref["formula"], family="gaussian", REML=reml), gb.datasets.load(ref["data"], derived=True))
    assert abs(fit.deviance - ref["criterion"]) < LMM_DEVIANCE_ABS
    assert _rel_err(fit.fixef, ref["fixef"]).max() < 1e-6
    assert (fit.se[list(ref["se"])] / pd.Series(ref["se"]) - 1).abs().max() < 1e-4
    assert np.max(np.abs(fit.theta.to_numpy() - np.array(ref["theta"]))) < 1e-4
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
