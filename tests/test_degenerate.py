"""Degenerate fits: each one ends in a named error or an honestly flagged fit, never a raw
numpy/scipy exception, a hang or a silently wrong answer."""

import warnings

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes.errors import DataError, FitError, LaplaceAdequacyWarning, SpecError

ML_METHODS = ["laplace", "agq", "pql", "joint"]


@pytest.fixture(scope="module")
def base():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"g": np.repeat(np.arange(10), 5).astype(str), "x": rng.normal(size=50)})


def fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gb.fit(*args, **kw)


@pytest.mark.parametrize("method", ML_METHODS)
@pytest.mark.parametrize("family", ["binomial", "gaussian"])
def test_no_fixed_effects(base, family, method):
    """y ~ 0 + (1 | g): no fixed-effect columns at all (a crash in the linear algebra before)."""
    rng = np.random.default_rng(1)
    y = rng.binomial(1, 0.5, 50) if family == "binomial" else rng.normal(size=50) + np.repeat(rng.normal(size=10), 5)
    f = fit("y ~ 0 + (1 | g)", base.assign(y=y), family=family, method=method)
    assert f.fixef.empty and f.vcov.shape == (0, 0)
    assert np.all(np.isfinite(f.theta_hat)) and (f.loglik is None or np.isfinite(f.loglik))
    assert f.predict(type="response").notna().all()


@pytest.mark.parametrize("y, what", [("const", "constant"), ("linear", "an exact linear function of")])
def test_lmm_without_residual_variance(base, y, what):
    """A constant response, or y = 1 + 2x exactly: σ = 0, no ML estimate (a math domain error and a
    LinAlgError before)."""
    yy = np.full(50, 3.0) if y == "const" else 1 + 2 * base.x
    with pytest.raises(DataError, match=f"response 'y' is {what}.*residual variance is zero"):
        gb.fit("y ~ x + (1 | g)", base.assign(y=yy), family="gaussian")


def test_all_weights_zero(base):
    d = base.assign(y=np.random.default_rng(2).poisson(2, 50), w=0.0)
    with pytest.raises(DataError, match="prior weights 'w' are zero in every row"):
        gb.fit(gb.Spec("y ~ x + (1 | g)", family="poisson", weights="w"), d)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | g)", "y ~ x + (1 | g) + (1 | h)"])
def test_duplicated_term(base, formula):
    """Only the sum of the two variances is identified: refused with the terms named (a relabelled
    copy of the grouping factor is the same partition)."""
    d = base.assign(y=np.random.default_rng(3).binomial(1, 0.5, 50), h="h" + base.g)
    with pytest.raises(SpecError, match=r"random term \(1 \| [gh]\) repeats \(1 \| g\).*sum of their variances"):
        gb.fit(formula, d, family="binomial")


@pytest.mark.parametrize("offset, at", [("raw", "ranges from"), ("one", "ranges from 0 to 800")])
@pytest.mark.parametrize("method", ["laplace", "pql"])
def test_offset_on_the_wrong_scale(base, offset, at, method):
    """An exposure given as days instead of log(days), or one offset of 800: an error naming
    the offset and the fix before any fitting, not a LinAlgError (nor a hang in the GLM start,
    nor a PQL fit with an intercept of -620 whose only sign of trouble depended on rounding)."""
    rng = np.random.default_rng(4)
    off = rng.integers(100, 900, 50).astype(float) if offset == "raw" else np.where(np.arange(50) == 3, 800.0, 0.0)
    d = base.assign(y=rng.poisson(2, 50), d=off)
    with pytest.raises(DataError, match=f"offset 'd' {at}.*log\\(exposure\\)"):
        gb.fit(gb.Spec("y ~ x + (1 | g)", family="poisson", offset="d"), d, method=method)


def test_singular_fit_with_one_theta(base):
    """One θ at its bound 0 leaves no free Hessian coordinate (eigvalsh of an empty matrix
    crashed): a boundary fit, converged, flagged singular."""
    d = base.assign(y=2 * base.x + np.random.default_rng(5).normal(size=50))
    f = fit("y ~ x + (1 | g)", d, family="gaussian")
    assert f.theta_hat[0] < 1e-4 and f.converged
    assert f.messages == ("boundary (singular) fit: see help('isSingular')",)


@pytest.mark.parametrize("method", ML_METHODS)
def test_separation_is_named_and_flagged(base, method):
    """z = 1 => y = 1: the ML estimate of β_z is infinite. lme4 reports a number; we flag the fit
    and name the term."""
    rng = np.random.default_rng(6)
    z = (np.arange(50) % 7 == 0).astype(float)
    d = base.assign(y=np.where(z == 1, 1, rng.binomial(1, 0.3, 50)), z=z)
    f = fit("y ~ z + x + (1 | g)", d, family="binomial", method=method)
    assert not f.converged
    assert any(m.startswith("quasi-complete separation: a combination of the fixed effects z is") for m in f.messages)


def test_no_false_separation_alarm_for_a_large_but_finite_coefficient(base):
    """A big coefficient because of the units of x is not separation."""
    rng = np.random.default_rng(7)
    d = base.assign(y=rng.binomial(1, 1 / (1 + np.exp(-base.x)), 50), xs=base.x / 50)
    f = fit("y ~ xs + (1 | g)", d, family="binomial")
    assert abs(f.fixef["xs"]) > 10 and not any("separation" in m for m in f.messages)


def test_rescaled_covariate_is_no_false_alarm(base):
    """x * 1e8: the same fit with the slope scaled by 1e-8; the convergence check scales the
    Hessian by its diagonal, so no 'failed to converge' (it said so before)."""
    rng = np.random.default_rng(8)
    d = base.assign(y=rng.binomial(1, 1 / (1 + np.exp(-base.x)), 50), xx=base.x * 1e8)
    a = fit("y ~ x + (1 | g)", d, family="binomial")
    b = fit("y ~ xx + (1 | g)", d, family="binomial")
    assert a.converged and b.converged and b.messages == a.messages
    assert not any("failed to converge" in m for m in b.messages)
    assert b.fixef["xx"] * 1e8 == pytest.approx(a.fixef["x"], rel=1e-6)
    assert b.se["xx"] * 1e8 == pytest.approx(a.se["x"], rel=1e-4)


def test_laplace_adequacy_warns_by_default():
    """guImmun: most mothers have one or two children, and Laplace is far from the likelihood;
    every Laplace fit checks itself against nested AGQ at its estimate and says so."""
    g = gb.datasets.load("guImmun")
    formula = ("immun ~ kid2p + mom25p + ord + ethn + momEd + husEd + momWork + rural + pcInd81 "
               "+ (1 | mom) + (1 | comm)")
    with pytest.warns(LaplaceAdequacyWarning, match="nested adaptive quadrature with 5 knots"):
        f = gb.fit(formula, g, family="binomial")
    check = f.details.adequacy
    assert check.nested and check.difference > 10 and not check.adequate
    assert check.shift > 10  # several standard errors: nested AGQ's mother sd is twice Laplace's
    assert f.converged  # the fit itself is fine; the approximation is the problem
    cbpp = fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", gb.datasets.load("cbpp"), family="binomial")
    assert cbpp.details.adequacy.adequate and abs(cbpp.details.adequacy.difference) < 0.1
    # a large data set sums many tiny per-cluster differences: the log-likelihood moves by
    # several units, the estimates by 0.1 SE, so no warning (the criterion is the shift)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from simulated import binary_100k

    formula, family, big = binary_100k()
    b = fit(formula, big, family=family)
    assert abs(b.details.adequacy.difference) > 1 and b.details.adequacy.shift < 0.05
    assert b.details.adequacy.adequate and not b.messages
    assert not any("Laplace approximation may be inaccurate" in m for m in cbpp.messages)


def test_huge_quadrature_grid_warns_with_its_cost():
    """A 3-d vector term with nAGQ = 25 is 15,625 knots per group: say what it costs before
    running (it ran for minutes silently). The warning, made an error here, stops the fit."""
    rng = np.random.default_rng(9)
    n = 2000
    d = pd.DataFrame({"g": np.repeat(np.arange(200), 10).astype(str), "x1": rng.normal(size=n),
                      "x2": rng.normal(size=n)})
    d["y"] = rng.binomial(1, 0.5, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gb.CostWarning)
        with pytest.raises(gb.CostWarning, match=r"15625 knots per group.*minutes.*grid='sparse'.*smaller nAGQ.*method='laplace'"):
            gb.fit("y ~ x1 + x2 + (x1 + x2 | g)", d, family="binomial", method="agq", nAGQ=25)


def test_negative_binomial_all_zero_response_by_agq_is_flagged_not_a_crash():
    """An all-zero count response has no ML estimate: the line search tries log θ far out, where
    exp underflowed to θ = 0 and a family formula divided by it (a ZeroDivisionError before).
    The fit now ends, reported as not converged."""
    d = pd.DataFrame({"y": [0] * 23, "x": [0.0] * 22 + [1.0], "g": [f"g{i % 3}" for i in range(23)]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = gb.fit("y ~ x + (1 | g)", d, family="nbinom2", method="agq")
    assert not f.converged and any("converge" in m for m in f.messages)


def test_negative_binomial_nb1_far_out_dispersion_trial_is_not_a_crash():
    """Under-dispersed counts push the NB1 dispersion to its Poisson limit; a line-search trial of
    log φ far out made φ³ overflow (OverflowError) in the family's derivatives. The fit ends at
    the small-φ boundary with the Poisson-like answer."""
    d = pd.DataFrame({"y": [0, 1, 0, 2, 1], "x": [0.0] * 5, "g": ["g0", "g1", "g0", "g1", "g0"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = gb.fit("y ~ x + (1 | g)", d, family="nbinom1", method="laplace")
    # all counts are exchangeable once the group sd is ~0: the intercept is log(mean y)
    assert f.fixef["(Intercept)"] == pytest.approx(np.log(0.8), abs=1e-3)


def test_near_constant_slope_covariate_gives_a_named_error_or_a_sane_fit():
    """x nearly constant (98-101): its random slope is confounded with the random intercept,
    PIRLS fails far out and its value came to depend on the warm start, so L-BFGS walked uphill
    to a logLik of -8e299 (and on another BLAS, X'WX at the modes was not positive definite: a
    LinAlgError). Now PIRLS reruns from u = 0 where the warm start fails, the optimizer never
    returns a point worse than the best it saw, and the fallback covariance cannot crash."""
    d = pd.DataFrame({"y": [0, 0, 0, 0, 0, 0, 15, 26, 0, 0, 377, 543, 612, 166],
                      "x": [100.0] * 8 + [98.423303, 98.0, 100.0, 100.0, 100.0, 100.9],
                      "g": ["g0", "g1", "g2"] * 4 + ["g0", "g1"]})
    try:
        f = fit("y ~ 1 + (x | g)", d, family="poisson", method="laplace")
    except FitError as e:
        assert "rescale covariates" in str(e)
    else:  # the Poisson GLM alone reaches about -1964
        assert np.isfinite(f.loglik) and f.loglik > -1e4


@pytest.mark.parametrize("seed", [1, 6])
def test_gaussian_log_link_with_negative_responses_leaks_no_numpy_warning(seed):
    """gaussian(log) with many negative y: the mean cannot follow them, trials far out overflow
    exp(η) inside PIRLS. That is an infinite deviance for the optimizer, not a numpy
    RuntimeWarning for the user; the fit ends converged or flagged."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"g": np.repeat(np.arange(8), 6).astype(str), "x": rng.normal(size=48)})
    d["y"] = np.exp(0.5 + 0.3 * d.x) + rng.normal(scale=1.0 + seed, size=48) - 1.5
    assert (d.y < 0).mean() > 0.4
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", gb.errors.ConvergenceWarning)
        f = gb.fit("y ~ x + (1 | g)", d, family="gaussian", link="log")
    assert np.isfinite(f.loglik) and (f.converged or f.messages)


def test_counts_in_the_tens_of_millions_fit_to_their_optimum():
    """Counts of about 3e7: the deviance is 4e8, mostly a constant. PIRLS stopped at a Newton
    decrement of 1e-10 |pdev| (0.04 in deviance), modes too loose for the optimizer, which
    stalled with the group sd 10 % off (Laplace 0.215, AGQ 0.196, AGQ flagged). PIRLS now
    measures the decrement against the number of rows, and the optimizer's relative ftol
    against the deviance's natural size."""
    rng = np.random.default_rng(0)
    n = 60
    d = pd.DataFrame({"g": np.repeat([f"g{i}" for i in range(12)], 5), "x": rng.normal(size=n)})
    d["y"] = rng.poisson(3, n) * 10**7
    agq = fit("y ~ x + (1 | g)", d, family="poisson", method="agq")
    lap = fit("y ~ x + (1 | g)", d, family="poisson")
    assert agq.converged
    sd_agq, sd_lap = agq.varcorr["sdcor"].iloc[0], lap.varcorr["sdcor"].iloc[0]
    assert sd_lap == pytest.approx(sd_agq, rel=1e-3)  # Laplace is accurate with such counts
    np.testing.assert_allclose(lap.fixef.values, agq.fixef.values, rtol=1e-7)


ORTHODONT_DISTANCE = [
    26, 25, 29, 31, 21.5, 22.5, 23, 26.5, 23, 22.5, 24, 27.5, 25.5, 27.5, 26.5, 27, 20, 23.5, 22.5, 26,
    24.5, 25.5, 27, 28.5, 22, 22, 24.5, 26.5, 24, 21.5, 24.5, 25.5, 23, 20.5, 31, 26, 27.5, 28, 31, 31.5,
    23, 23, 23.5, 25, 21.5, 23.5, 24, 28, 17, 24.5, 26, 29.5, 22.5, 25.5, 25.5, 26, 23, 24.5, 26, 30,
    22, 21.5, 23.5, 25, 21, 20, 21.5, 23, 21, 21.5, 24, 25.5, 20.5, 24, 24.5, 26, 23.5, 24.5, 25, 26.5,
    21.5, 23, 22.5, 23.5, 20, 21, 21, 22.5, 21.5, 22.5, 23, 25, 23, 23, 23.5, 24, 20, 21, 22, 21.5,
    16.5, 19, 19, 19.5, 24.5, 25, 28, 28]


def test_boundary_local_minimum_is_left_for_the_interior_optimum():
    """nlme's Orthodont, lmer(distance ~ age + Sex + (age | Subject), REML = FALSE): from lme4's
    start the gradient path ends with the slope sd at 0 (θ = (0.84, 0.035, 0), logLik -217.220),
    a minimum along every single coordinate, so probing one θ inward finds nothing; lme4 reaches
    logLik -216.41758 at θ = (2.0189, -0.1247, 0.1066). A second run from inside finds it."""
    subj = [f"M{i:02d}" for i in range(1, 17)] + [f"F{i:02d}" for i in range(1, 12)]
    d = pd.DataFrame({"distance": ORTHODONT_DISTANCE, "age": [8, 10, 12, 14] * 27,
                      "Subject": np.repeat(subj, 4),
                      "Sex": pd.Categorical(np.repeat(["Male"] * 16 + ["Female"] * 11, 4), categories=["Male", "Female"])})
    f = fit("distance ~ age + Sex + (age | Subject)", d, REML=False)
    assert f.loglik == pytest.approx(-216.417580483454, abs=1e-6)
    np.testing.assert_allclose(f.theta_hat, [2.018859955253, -0.1247200364216, 0.1065905188188], rtol=1e-3)
    assert f.converged and not f.messages


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (x | g) + (1 | h)"])
def test_lmm_row_of_weight_zero_is_a_row_left_out(formula, reml):
    """A prior weight of 0 gives a row infinite variance: it carries no information. The LMM
    counted it as an observation and put log 0 into the likelihood (logLik -Inf, the optimizer
    stuck at its start; lmer also reports -Inf). Now the fit equals the fit without the row."""
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": rng.integers(0, 8, 100).astype(str), "h": rng.integers(0, 5, 100).astype(str),
                      "x": rng.normal(size=100)})
    d["y"] = d.x + rng.normal(size=100) + rng.normal(size=8)[d.g.astype(int)] + rng.normal(size=5)[d.h.astype(int)]
    d["w"] = 1.0
    d.loc[3, "w"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = gb.fit(formula, d, weights="w", REML=reml)
        f0 = gb.fit(formula, d.drop(index=3), REML=reml)
    assert f.loglik == pytest.approx(f0.loglik, abs=1e-8)
    np.testing.assert_allclose(f.fixef.values, f0.fixef.values, atol=1e-7)
    np.testing.assert_allclose(f.theta.values, f0.theta.values, atol=1e-6)
    np.testing.assert_allclose(np.asarray(f.se, float), np.asarray(f0.se, float), rtol=1e-6)


def test_lmm_response_constant_within_groups_is_reported_not_a_numpy_error():
    """y is the same for every row of a group: the group effects reproduce it, the residual
    variance goes to 0 and θ to infinity. The end point could not be factored and a raw
    LinAlgError escaped (ML); now a FitError names the grouping factor, for ML and REML alike,
    wherever rounding lets the optimizer stop (a singular system, or a huge θ that can still
    be factored, which REML once reported as a converged fit)."""
    rng = np.random.default_rng(5)
    d = pd.DataFrame({"g": rng.integers(0, 5, 40).astype(str)})
    d["y"] = d.g.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FitError, match="no finite maximum.*'g'"):
            gb.fit("y ~ 1 + (1 | g)", d, REML=False)
        with pytest.raises(FitError, match="no finite maximum.*'g'"):
            gb.fit("y ~ 1 + (1 | g)", d, REML=True)


@pytest.mark.parametrize("c", [1e-14, 1e-4, 1e4, 1e10])
@pytest.mark.parametrize("formula", ["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"])
def test_lmm_weights_on_any_scale_give_the_same_fit(formula, c):
    """Weights scaled by c are the same model: θ (relative to the residual sd of a row of weight
    1) scales by 1/√c, the logLik, β and the random effects do not. Weights of 1e4 once left the
    slope model at a wrong boundary fit reported as converged (logLik -876.6 for -871.8), 1e10
    the intercept model at θ = 0, and weights of 1e-14 stopped at the start."""
    d = gb.datasets.load("sleepstudy")
    ref = fit(gb.Spec(formula), d)
    f = fit(gb.Spec(formula, weights="w"), d.assign(w=c))
    assert f.converged and ref.converged
    assert f.loglik == pytest.approx(ref.loglik, abs=1e-6)
    np.testing.assert_allclose(f.theta.values * np.sqrt(c), ref.theta.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f.fixef.values, ref.fixef.values, rtol=1e-6)


@pytest.mark.parametrize("c", [1e-4, 1e4])
def test_random_slope_on_any_covariate_scale_gives_the_same_fit(c):
    """Days in units 1e4 times larger make the slope's θ 1e4 times smaller, nothing else: θ is
    optimized in units of its covariate's scale. Before, Days x 1e4 ended at a boundary fit
    (logLik -880.4 for -876.0 by ML) reported as converged."""
    d = gb.datasets.load("sleepstudy")
    spec = gb.Spec("Reaction ~ D + (D | Subject)", REML=False)
    ref = fit(spec, d.assign(D=d.Days))
    f = fit(spec, d.assign(D=d.Days * c))
    assert f.converged and ref.converged
    assert f.loglik == pytest.approx(ref.loglik, abs=1e-6)
    np.testing.assert_allclose(f.theta.values * np.array([1.0, c, c]), ref.theta.values, rtol=1e-4, atol=1e-7)


def test_glmm_random_slope_on_a_large_covariate_scale_gives_the_same_fit():
    """The GLMM's stages optimize θ in units of its covariate's scale too: age in units 1e3
    times larger gives the same fit (it stopped unconverged before)."""
    d = gb.datasets.load("Contraception")
    spec = gb.Spec("use ~ A + urban + (A | district)", family="binomial")
    ref = fit(spec, d.assign(A=d.age))
    f = fit(spec, d.assign(A=d.age * 1e3))
    assert f.converged == ref.converged
    assert f.loglik == pytest.approx(ref.loglik, abs=1e-4)
    np.testing.assert_allclose(f.theta.values * np.array([1.0, 1e3, 1e3]), ref.theta.values, rtol=1e-3, atol=1e-5)
