"""Bad input gives a glmmbayes error whose message names the culprit; odd-but-valid dtypes work.

Every test asserts the exception type and that the message names the column, row, term, value
or formula position at fault -- never a numpy/pandas/formulaic traceback, never a silent fit.
"""

from __future__ import annotations

import gc
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes import DataError, FamilyError, FormulaError, RankDeficiencyWarning, SpecError

CBPP_F = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return gb.datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return gb.fit(CBPP_F, cbpp, family="binomial")


@pytest.fixture(scope="module")
def sleep():
    return gb.datasets.load("sleepstudy")


def _design(formula, data, **kw):
    return gb.design(formula, data, **kw)


def _msg(excinfo) -> str:
    return str(excinfo.value)


# ----------------------------------------------------------------------------- unknown columns


@pytest.mark.parametrize(
    "formula, kw, culprit, part",
    [
        ("cbind(incidence, size - incidence) ~ perod + (1 | herd)", {}, "perod", "fixed-effects part"),
        ("cbind(incidence, size - incidence) ~ period * foo + (1 | herd)", {}, "foo", "fixed-effects part"),
        ("cbind(incidence, size - incidence) ~ I(bar^2) + (1 | herd)", {}, "bar", "fixed-effects part"),
        ("yy ~ period + (1 | herd)", {}, "yy", "response"),
        ("cbind(incidenc, size - incidence) ~ period + (1 | herd)", {}, "incidenc", "response cbind("),
        ("cbind(incidence, siz - incidence) ~ period + (1 | herd)", {}, "siz", "response cbind("),
        ("cbind(incidence, size - incidence) ~ period + (xx | herd)", {}, "xx", "random term (xx | herd)"),
        ("cbind(incidence, size - incidence) ~ period + (1 | hrd)", {}, "hrd", "grouping factor"),
        ("cbind(incidence, size - incidence) ~ period + (1 | herd/plot)", {}, "plot", "grouping factor"),
        ("cbind(incidence, size - incidence) ~ period + offset(log(sz)) + (1 | herd)", {}, "sz", "offset"),
        ("incidence ~ period + (1 | herd)", {"family": "poisson", "offset": "log(exposure)"}, "exposure", "offset"),
        ("incidence / size ~ period + (1 | herd)", {"weights": "trials"}, "trials", "weights"),
    ],
)
def test_unknown_column_is_named(cbpp, formula, kw, culprit, part):
    with pytest.raises(DataError) as ei:
        _design(formula, cbpp, **{"family": "binomial", **kw})
    msg = _msg(ei)
    assert f"'{culprit}'" in msg
    assert "column" in msg and part in msg
    assert "herd, incidence, size, period" in msg  # lists what is available


# ----------------------------------------------------------------------------- missing values


def test_nan_in_used_columns_counts_rows_and_names_columns(cbpp):
    d = cbpp.astype({"size": float})
    d.loc[[3, 7], "size"] = np.nan
    d.loc[9, "period"] = np.nan
    with pytest.raises(DataError) as ei:
        _design(CBPP_F, d, family="binomial")
    msg = _msg(ei)
    assert "missing values in 3 rows" in msg
    assert "'size' (2 rows)" in msg and "'period' (1 row)" in msg
    assert "first at row 3" in msg and "na_action='omit'" in msg


def test_nan_in_unused_column_is_fine(cbpp):
    d = cbpp.assign(notes=np.nan)
    assert _design(CBPP_F, d, family="binomial").n == len(cbpp)


def test_na_omit_records_and_reports(cbpp, cbpp_fit):
    d = cbpp.astype({"size": float})
    d.loc[[3, 7], "size"] = np.nan
    d.loc[9, "period"] = np.nan
    fit = gb.fit(CBPP_F, d, na_action="omit", family="binomial")
    assert fit.design.n_omitted == 3
    assert fit.nobs == len(cbpp) - 3
    assert list(fit.design.rows) == [i for i in range(len(cbpp)) if i not in (3, 7, 9)]
    assert list(fit.fitted.index) == list(fit.design.rows)
    assert "3 rows with missing values omitted" in str(fit)
    # the same fit as on the complete rows
    clean = gb.fit(CBPP_F, cbpp.drop(index=[3, 7, 9]), family="binomial")
    np.testing.assert_allclose(fit.fixef, clean.fixef, rtol=1e-8)


def test_rows_are_reported_in_input_positions_after_omit(cbpp):
    d = cbpp.assign(y=(cbpp.incidence > 0).astype(float))
    d.loc[[0, 1], "period"] = np.nan
    d.loc[5, "y"] = 2.0
    with pytest.raises(DataError, match=r"row 5 has y = 2\b"):
        _design("y ~ period + (1 | herd)", d, na_action="omit", family="binomial")


def test_everything_missing_under_omit(cbpp):
    with pytest.raises(DataError, match="no rows left"):
        _design("cbind(incidence, size - incidence) ~ x + (1 | herd)", cbpp.assign(x=np.nan), na_action="omit", family="binomial")


# ----------------------------------------------------------------------------- response support


def test_binary_response_not_01(cbpp):
    d = cbpp.assign(y=(cbpp.incidence > 0).astype(int))
    d.loc[5, "y"] = 2
    with pytest.raises(DataError) as ei:
        _design("y ~ period + (1 | herd)", d, family="binomial")
    msg = _msg(ei)
    assert "'y'" in msg and "row 5" in msg and "y = 2" in msg and "np.float64" not in msg


def test_successes_exceed_trials(cbpp):
    d = cbpp.copy()
    d.loc[4, "incidence"] = 100
    with pytest.raises(DataError) as ei:
        _design(CBPP_F, d, family="binomial")
    msg = _msg(ei)
    assert "'size - incidence'" in msg and "row 4" in msg and "successes > trials" in msg


def test_infinite_trials(cbpp):
    d = cbpp.astype({"size": float})
    d.loc[2, "size"] = np.inf
    with pytest.raises(DataError, match=r"'size - incidence'.*row 2 has inf"):
        _design(CBPP_F, d, family="binomial")


def test_proportion_response_without_weights(cbpp):
    d = cbpp.assign(p=cbpp.incidence / cbpp["size"])
    with pytest.raises(DataError) as ei:
        _design("p ~ period + (1 | herd)", d, family="binomial")
    msg = _msg(ei)
    assert "'p'" in msg and "row 0" in msg and "weights=" in msg
    # with the trials as weights it is the cbind model
    des = _design("p ~ period + (1 | herd)", d, weights="size", family="binomial")
    ref = _design(CBPP_F, cbpp, family="binomial")
    np.testing.assert_allclose(des.y, ref.y)
    np.testing.assert_allclose(des.wt, ref.wt)


def test_negative_weights(cbpp):
    d = cbpp.assign(p=cbpp.incidence / cbpp["size"], w=cbpp["size"].astype(float))
    d.loc[2, "w"] = -1.0
    with pytest.raises(DataError, match=r"weights 'w'.*row 2 has -1"):
        _design("p ~ period + (1 | herd)", d, weights="w", family="binomial")


@pytest.mark.parametrize("value, row", [(-1, 2), (1.5, 6)])
def test_poisson_counts(cbpp, value, row):
    d = cbpp.astype({"incidence": float})
    d.loc[row, "incidence"] = value
    with pytest.raises(DataError) as ei:
        _design("incidence ~ period + (1 | herd)", d, family="poisson")
    msg = _msg(ei)
    assert "'incidence'" in msg and f"row {row}" in msg and f"y = {value:g}" in msg and "counts" in msg


def test_gamma_nonpositive(cbpp):
    with pytest.raises(DataError) as ei:
        _design("incidence ~ period + (1 | herd)", cbpp, family="Gamma")
    msg = _msg(ei)
    first = int(np.flatnonzero(cbpp.incidence.to_numpy() <= 0)[0])
    assert "'incidence'" in msg and f"row {first}" in msg and "positive" in msg
    assert f"{int((cbpp.incidence <= 0).sum())} rows" in msg


def test_factor_response_with_three_levels(cbpp):
    with pytest.raises(DataError) as ei:
        _design("period ~ size + (1 | herd)", cbpp, family="binomial")
    msg = _msg(ei)
    assert "'period'" in msg and "two levels" in msg and "4" in msg


def test_factor_response_with_non_binomial(cbpp):
    d = cbpp.assign(f=pd.Categorical(np.where(cbpp.incidence > 0, "y", "n")))
    with pytest.raises(DataError) as ei:
        _design("f ~ period + (1 | herd)", d, family="poisson")
    msg = _msg(ei)
    assert "'f'" in msg and "binomial" in msg and "poisson" in msg


def test_cbind_with_non_binomial(cbpp):
    with pytest.raises(DataError, match=r"cbind\(incidence, size - incidence\).*binomial"):
        _design(CBPP_F, cbpp, family="poisson")


# ----------------------------------------------------------------------------- non-finite covariates


def test_log_of_zero_in_fixed_part_is_named_not_dropped(cbpp):
    # -inf in a column must not be "rank deficient and silently dropped"
    with pytest.raises(DataError) as ei:
        _design("cbind(incidence, size - incidence) ~ log(incidence) + (1 | herd)", cbpp, family="binomial")
    msg = _msg(ei)
    assert "'log(incidence)'" in msg and "row 3" in msg and "-inf" in msg


def test_infinite_random_covariate(cbpp):
    with pytest.raises(DataError, match=r"\(log\(incidence\) \| herd\).*'log\(incidence\)'.*row 3"):
        _design("cbind(incidence, size - incidence) ~ 1 + (log(incidence) | herd)", cbpp, family="binomial")


def test_infinite_offset(cbpp):
    with pytest.raises(DataError, match=r"offset 'log\(incidence\)'.*row 3.*-inf"):
        _design("incidence ~ period + offset(log(incidence)) + (1 | herd)", cbpp, family="poisson")


# ----------------------------------------------------------------------------- random-effect structure


def test_grouping_factor_with_one_level(cbpp):
    with pytest.raises(DataError) as ei:
        _design("cbind(incidence, size - incidence) ~ period + (1 | farm)", cbpp.assign(farm="A"), family="binomial")
    msg = _msg(ei)
    assert "'farm'" in msg and "1 level" in msg


def test_more_random_effects_than_observations():
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.integers(0, 2, 9), "x": rng.normal(size=9), "g": list("aabbccdde")})
    with pytest.raises(DataError) as ei:  # 5 levels x 2 coefficients = 10 > 9
        _design("y ~ x + (x | g)", d, family="binomial")
    msg = _msg(ei)
    assert "(x | g)" in msg and "5 levels" in msg and "10 random effects" in msg and "9 observations" in msg


def test_lmm_grouping_factor_with_a_level_per_observation(sleep):
    d = sleep.assign(obs=np.arange(len(sleep)))
    with pytest.raises(DataError) as ei:
        _design("Reaction ~ Days + (1 | obs)", d, family="gaussian")
    msg = _msg(ei)
    assert "'obs'" in msg and "180 levels" in msg and "180 observations" in msg


def test_lmm_as_many_random_effects_as_observations(sleep):
    d = sleep[sleep.Days < 2]  # 18 subjects x 2 days: (Days | Subject) has 36 effects for 36 rows
    with pytest.raises(DataError, match=r"\(Days \| Subject\).*'Subject'.*36 random effects for 36 obs"):
        _design("Reaction ~ Days + (Days | Subject)", d, family="gaussian")


def test_glmm_observation_level_effect_is_allowed(cbpp):
    d = cbpp.assign(obs=np.arange(len(cbpp)))
    des = _design("cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)", d, family="binomial")
    assert des.ngrps == {"obs": 56, "herd": 15}


# ----------------------------------------------------------------------------- rank deficiency


def test_rank_deficient_X_drops_named_column_like_lme4(cbpp):
    d = cbpp.assign(size2=2.0 * cbpp["size"])
    f = "cbind(incidence, size - incidence) ~ period + size + size2 + (1 | herd)"
    with pytest.warns(RankDeficiencyWarning) as rec:
        fit = gb.fit(f, d, family="binomial")
    text = " ".join(str(w.message) for w in rec if issubclass(w.category, RankDeficiencyWarning))
    assert "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient" in text
    assert "size2" in text
    assert fit.design.dropped == ("size2",)
    assert list(fit.fixef.index) == ["(Intercept)", "period2", "period3", "period4", "size"]
    assert fit.vcov.shape == (5, 5) and np.all(np.isfinite(fit.se))
    assert "size2" in str(fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = gb.fit("cbind(incidence, size - incidence) ~ period + size + (1 | herd)", cbpp, family="binomial")
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-6, atol=1e-8)
    # prediction on new data drops the same column
    np.testing.assert_allclose(fit.predict(d), fit.predict(), rtol=1e-12)


@pytest.mark.parametrize("offset, dropped", [(3e-6, False), (3e-7, False), (3e-9, True)])
def test_nearly_collinear_column_kept_or_dropped_at_rs_tolerance(offset, dropped):
    """R's qr tolerance 1e-7 on a column's distance from the span of the earlier ones, relative
    to its norm: the same decision by the one-QR shortcut (distance well above it) and by the
    column-by-column check it defers to near the tolerance."""
    from glmmbayes.design import _drop_rank_deficient

    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(200), rng.normal(size=200), rng.normal(size=200)])
    e = rng.normal(size=200)
    e -= X @ np.linalg.lstsq(X, e, rcond=None)[0]  # orthogonal to the columns
    x3 = X[:, 1] + 0.5 * X[:, 2]
    X = np.column_stack([X, x3 + offset * np.linalg.norm(x3) * e / np.linalg.norm(e)])
    names = ("a", "b", "c", "d")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        Xk, kept, out = _drop_rank_deficient(X, names)
    assert out == (("d",) if dropped else ())
    assert kept == (names[:3] if dropped else names)
    assert any(issubclass(w.category, RankDeficiencyWarning) for w in rec) == dropped
    np.testing.assert_array_equal(Xk, X[:, :3] if dropped else X)


def test_duplicated_column_name_in_formula(cbpp):
    d = cbpp.assign(period_copy=cbpp.period)
    with pytest.warns(RankDeficiencyWarning, match="period_copy2, period_copy3, period_copy4"):
        des = _design("cbind(incidence, size - incidence) ~ period + period_copy + (1 | herd)", d, family="binomial")
    assert des.fixef_names == ("(Intercept)", "period2", "period3", "period4")


# ----------------------------------------------------------------------------- families


def test_unknown_family(cbpp):
    with pytest.raises(FamilyError, match=r"unknown family 'binomal'.*binomial, poisson, gaussian, Gamma"):
        gb.Spec(CBPP_F, family="binomal")


def test_unknown_link():
    with pytest.raises(FamilyError, match=r"unknown link 'logti'"):
        gb.Spec(CBPP_F, link="logti", family="binomial")


def test_unsupported_family_link():
    with pytest.raises(FamilyError) as ei:
        gb.Spec("y ~ x + (1 | g)", family="poisson", link="logit")
    msg = _msg(ei)
    assert "'logit'" in msg and "'poisson'" in msg and "supported: log" in msg


def test_family_of_wrong_type():
    with pytest.raises(FamilyError, match="got 3"):
        gb.Spec(CBPP_F, family=3)


# ----------------------------------------------------------------------------- formula syntax


@pytest.mark.parametrize(
    "formula, what, pos",
    [
        ("y ~ (x + (1 | g)", "'(' is never closed", 4),
        ("y ~ x) + (1 | g)", "')' without '('", 5),
        ("y ~ x + + (1 | g)", "empty term", 8),
        ("y ~ x + ", "empty term", 6),
        ("y ~ x + 1 | g", "must be in parentheses", 10),
        ("y x + (1 | g)", "no '~'", 13),
        ("~ x + (1 | g)", "no response", 0),
        ("y ~ x + (1 | )", "no grouping factor", 11),
        ("y ~ x + ( | g)", "nothing on the left", 10),
        ("y ~ x ~ z + (1 | g)", "more than one '~'", 6),
    ],
)
def test_formula_syntax_error_position(formula, what, pos):
    with pytest.raises(FormulaError) as ei:
        gb.Spec(formula, family="binomial")
    msg = _msg(ei)
    assert what in msg
    assert ei.value.position == pos
    assert f"(position {pos})" in msg and formula in msg
    caret = msg.splitlines()[-1]
    assert caret.index("^") - 2 == pos  # the caret sits under the culprit


def test_formula_without_random_term():
    with pytest.raises(SpecError, match=r"no random-effect term in formula 'y ~ x'"):
        gb.Spec("y ~ x", family="binomial")


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("data, kind", [(None, "NoneType"), ({"a": [1]}, "dict"), (np.zeros((3, 2)), "ndarray")])
def test_data_must_be_a_dataframe(data, kind):
    with pytest.raises(DataError, match=f"DataFrame, got {kind}"):
        gb.fit(CBPP_F, data, family="binomial")


def test_empty_data(cbpp):
    with pytest.raises(DataError, match="no rows"):
        gb.fit(CBPP_F, cbpp.iloc[:0], family="binomial")


def test_invalid_method(cbpp):
    with pytest.raises(SpecError, match=r"unknown method 'lapalce'; available: laplace"):
        gb.fit(CBPP_F, cbpp, method="lapalce", family="binomial")


@pytest.mark.parametrize("nagq", [-1, 1.5, "3"])
def test_invalid_nagq(cbpp, nagq):
    with pytest.raises(SpecError, match=re.escape(f"got {nagq!r}")):
        gb.fit(CBPP_F, cbpp, nAGQ=nagq, family="binomial")


def test_reml_where_it_is_not_defined(cbpp):
    """GLMM REML is the Laplace approximation with β integrated out (laplace, pql); AGQ, NUTS and
    non-normal random effects have no REML variant and say so."""
    with pytest.raises(SpecError, match="REML for a GLMM.*method='agq' has no REML variant"):
        gb.fit(CBPP_F, cbpp, REML=True, method="agq", family="binomial")
    with pytest.raises(SpecError, match="REML for a GLMM.*nAGQ > 1"):
        gb.fit(CBPP_F, cbpp, REML=True, nAGQ=5, family="binomial")
    with pytest.raises(SpecError, match="REML is defined for normal random effects"):
        gb.Spec("y ~ 0 + x + (1 | g)", family="gaussian", REML=True,
                re_dist=gb.RandomEffect("exponential", rate=1.0, entry="sqrt"))


def test_invalid_na_action():
    with pytest.raises(SpecError, match=r"na_action.*'drop'"):
        gb.Spec(CBPP_F, na_action="drop", family="binomial")


def test_weights_must_be_a_column_name():
    with pytest.raises(SpecError, match="weights must name a data column.*ndarray"):
        gb.Spec(CBPP_F, weights=np.ones(3), family="binomial")


# ----------------------------------------------------------------------------- column types


def test_mixed_type_object_column(cbpp):
    d = cbpp.assign(pe=cbpp.period.astype(str).astype(object))
    d.loc[3, "pe"] = 5
    with pytest.raises(DataError) as ei:
        _design("cbind(incidence, size - incidence) ~ pe + (1 | herd)", d, family="binomial")
    msg = _msg(ei)
    assert "'pe'" in msg and "row 3" in msg and "mixes" in msg


def test_datetime_column(cbpp):
    d = cbpp.assign(t=pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(len(cbpp)), "D"))
    with pytest.raises(DataError, match=r"column 't' has dtype datetime64"):
        _design("cbind(incidence, size - incidence) ~ t + (1 | herd)", d, family="binomial")


def test_duplicated_data_column(cbpp):
    d = pd.concat([cbpp, cbpp[["size"]]], axis=1)
    with pytest.raises(DataError, match="more than one column named 'size'"):
        _design(CBPP_F, d, family="binomial")


def test_string_factor_in_cbind_is_named(cbpp):
    with pytest.raises(DataError, match=r"failures 'x' must be numeric"):
        _design("cbind(incidence, x) ~ period + (1 | herd)", cbpp.assign(x=cbpp["size"].astype(str)), family="binomial")


@pytest.mark.parametrize(
    "convert, levels",
    [
        (lambda h: h.astype(str).astype(object), [str(i) for i in sorted(range(1, 16), key=str)]),  # R sorts strings
        (lambda h: h.astype(str).astype("string"), [str(i) for i in sorted(range(1, 16), key=str)]),
        (lambda h: h.astype(int), [str(i) for i in range(1, 16)]),  # numbers sort numerically
        (lambda h: h.astype(int).astype("Int64"), [str(i) for i in range(1, 16)]),
    ],
    ids=["object", "string", "int", "Int64"],
)
def test_grouping_column_dtypes(cbpp, cbpp_fit, convert, levels):
    d = cbpp.assign(herd=convert(cbpp.herd))
    fit = gb.fit(CBPP_F, d, family="binomial")
    assert list(fit.ranef["herd"].index) == levels
    np.testing.assert_allclose(fit.fixef, cbpp_fit.fixef, rtol=1e-6)
    np.testing.assert_allclose(fit.loglik, cbpp_fit.loglik, rtol=1e-9)
    # the same random effect for the same herd, whatever the order of levels
    np.testing.assert_allclose(
        fit.ranef["herd"].loc[levels].to_numpy(), cbpp_fit.ranef["herd"].loc[levels].to_numpy(), rtol=1e-5, atol=1e-7
    )


def test_bool_response_equals_01_response(cbpp):
    base = cbpp.assign(y=(cbpp.incidence > 0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gb.ConvergenceWarning)
        ref = gb.fit("y ~ period + (1 | herd)", base, family="binomial")
        for y in [cbpp.incidence > 0, (cbpp.incidence > 0).astype("boolean"),
                  pd.Series(np.where(cbpp.incidence > 0, "yes", "no")).astype("string")]:
            des = _design("y ~ period + (1 | herd)", cbpp.assign(y=y), family="binomial")
            np.testing.assert_array_equal(des.y, base.y.to_numpy())
        fit = gb.fit("y ~ period + (1 | herd)", cbpp.assign(y=cbpp.incidence > 0), family="binomial")
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-8)


def test_nullable_dtypes(cbpp, cbpp_fit):
    d = cbpp.astype({"incidence": "Int64", "size": "Int64"})
    fit = gb.fit(CBPP_F, d, family="binomial")
    np.testing.assert_allclose(fit.fixef, cbpp_fit.fixef, rtol=1e-8)
    d.loc[3, "incidence"] = pd.NA
    with pytest.raises(DataError, match=r"missing values in 1 row .*'incidence' \(1 row\); first at row 3"):
        _design(CBPP_F, d, family="binomial")
    assert _design(CBPP_F, d, na_action="omit", family="binomial").n_omitted == 1
    s = cbpp.assign(period=cbpp.period.astype(str).astype("string"))
    s.loc[0, "period"] = pd.NA
    with pytest.raises(DataError, match=r"'period' \(1 row\); first at row 0"):
        _design(CBPP_F, s, family="binomial")
    fit = gb.fit(CBPP_F, s, na_action="omit", family="binomial")
    assert fit.design.n_omitted == 1 and list(fit.fixef.index) == ["(Intercept)", "period2", "period3", "period4"]


def test_non_default_index_aligns(cbpp):
    shuffled = cbpp.sample(frac=1.0, random_state=3)
    fit = gb.fit(CBPP_F, shuffled, family="binomial")
    assert list(fit.fitted.index) == list(shuffled.index)
    # assigning back to the user's frame aligns row by row
    back = shuffled.assign(fv=fit.fitted, r=fit.residuals("response"))
    np.testing.assert_allclose(back.fv, fit.fitted_values())
    np.testing.assert_allclose(back.incidence / back["size"] - back.fv, back.r, atol=1e-12)


def test_object_column_of_numbers_is_numeric_not_a_factor(cbpp):
    # e.g. a column that went through a concat with None: R would see numbers, so must we
    d = cbpp.assign(x=pd.Series(cbpp["size"].tolist(), dtype=object))
    d.loc[3, "x"] = None
    f = "cbind(incidence, size - incidence) ~ x + (1 | herd)"
    fit = gb.fit(f, d, na_action="omit", family="binomial")
    assert list(fit.fixef.index) == ["(Intercept)", "x"]
    ref = gb.fit("cbind(incidence, size - incidence) ~ size + (1 | herd)", cbpp.drop(index=3), family="binomial")
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit.predict(d.drop(index=3)), fit.predict(), rtol=1e-12)


def test_object_column_with_pd_na_is_missing_not_mixed(cbpp):
    d = cbpp.assign(pe=pd.Series(cbpp.period.astype(str).tolist(), dtype=object))
    d.loc[3, "pe"] = pd.NA
    d.loc[4, "pe"] = None
    with pytest.raises(DataError, match=r"'pe' \(2 rows\); first at row 3"):
        _design("cbind(incidence, size - incidence) ~ pe + (1 | herd)", d, family="binomial")
    assert _design("cbind(incidence, size - incidence) ~ pe + (1 | herd)", d, na_action="omit", family="binomial").n_omitted == 2


def test_predict_newdata_must_be_a_dataframe(cbpp_fit, cbpp):
    with pytest.raises(DataError, match="newdata must be a pandas DataFrame, got ndarray"):
        cbpp_fit.predict(cbpp.to_numpy())


def test_unknown_method_option_is_named():
    d = gb.datasets.load("cbpp")
    with pytest.raises(gb.SpecError, match="unknown option 'foo'.*laplace"):
        gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, foo=1, family="binomial")
    with pytest.raises(gb.SpecError, match="nAGQ applies to"):
        gb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, method="pql", nAGQ=3, family="binomial")


def test_laplace_and_pql_refuse_non_normal_random_effects_and_say_why():
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=40), "x": np.tile([0.5, 1.0], 20), "g": np.repeat(np.arange(20), 2)})
    spec = gb.Spec("y ~ 0 + x + (1 | g)", family="gaussian",
                   re_dist=gb.RandomEffect("exponential", rate=1.0, entry="sqrt"))
    with pytest.raises(SpecError, match="non-normal random effects.*assumes normal.*method='agq'"):
        gb.fit(spec, d)
    with pytest.raises(SpecError, match="method='pql' cannot fit non-normal.*linear mixed model"):
        gb.fit(spec, d, method="pql")


# ----------------------------------------------------------------------------- dtype safety


def test_unsigned_counts_do_not_wrap_around(cbpp, cbpp_fit):
    d = cbpp.astype({"incidence": "uint8", "size": "uint8"})
    fit = gb.fit(CBPP_F, d, family="binomial")
    np.testing.assert_allclose(fit.fixef, cbpp_fit.fixef, rtol=1e-8)
    d.loc[6, "incidence"] = d.loc[6, "size"] + 1  # uint8 size - incidence would be 255
    with pytest.raises(DataError) as ei:
        _design(CBPP_F, d, family="binomial")
    msg = _msg(ei)
    assert "'size - incidence' must be finite non-negative whole numbers (successes > trials?)" in msg
    assert "row 6 has -1" in msg and "255" not in msg
    with pytest.raises(DataError, match=r"'size - incidence'.*row 6 has -1"):
        _design(CBPP_F, d.astype({"incidence": "UInt8", "size": "UInt8"}), family="binomial")


@pytest.mark.parametrize("dtype", ["UInt8", "Int64", "Float64"])
def test_nullable_na_is_a_missing_value(cbpp, dtype):
    d = cbpp.assign(x=pd.array(cbpp["size"].tolist(), dtype=dtype))
    d.loc[[2, 9], "x"] = pd.NA
    for formula in ["cbind(incidence, x - incidence) ~ period + (1 | herd)",
                    "cbind(incidence, size - incidence) ~ I(x^2) + (1 | herd)",
                    "cbind(incidence, size - incidence) ~ log(Q('x')) + (1 | herd)"]:
        with pytest.raises(DataError, match=r"missing values in 2 rows .*'x' \(2 rows\); first at row 2"):
            _design(formula, d, family="binomial")
        assert _design(formula, d, na_action="omit", family="binomial").n_omitted == 2


def test_nullable_boolean_na_is_a_missing_value(cbpp):
    d = cbpp.assign(b=pd.array((cbpp.incidence > 0).tolist(), dtype="boolean"))
    d.loc[4, "b"] = pd.NA
    with pytest.raises(DataError, match=r"'b' \(1 row\); first at row 4"):
        _design("cbind(incidence, size - incidence) ~ b + (1 | herd)", d, family="binomial")
    des = _design("cbind(incidence, size - incidence) ~ b + (1 | herd)", d, na_action="omit", family="binomial")
    assert des.fixef_names == ("(Intercept)", "bTRUE")


@pytest.mark.parametrize("term", ["I(s^2)", "log(s)", "I(s * 2):period", "I(s - 1)"])
def test_arithmetic_on_a_string_column_is_named(cbpp, term):
    d = cbpp.assign(s=cbpp.herd.astype(str).astype(object).radd("h"))
    with pytest.raises(DataError) as ei:
        _design(f"cbind(incidence, size - incidence) ~ {term} + (1 | herd)", d, family="binomial")
    msg = _msg(ei)
    assert msg.startswith("fixed-effects part"), msg
    assert "column 's' holds text" in msg and "needs numbers" in msg
    expr = term.split(":")[0]
    assert f"'{expr}'" in msg


def test_string_response_arithmetic_is_named(cbpp):
    d = cbpp.assign(s=cbpp["size"].astype(str).astype("string"))
    with pytest.raises(DataError, match=r"response cbind\(incidence, s - incidence\).*expression "
                                        r"'s - incidence' needs numbers but column 's' holds text"):
        _design("cbind(incidence, s - incidence) ~ period + (1 | herd)", d, family="binomial")


# ----------------------------------------------------------------------------- no aliasing


def test_design_owns_read_only_copies_of_the_data(cbpp):
    d = cbpp.astype({"incidence": float, "size": float}).assign(
        y=(cbpp.incidence > 0).astype(float), x=np.linspace(0, 1, len(cbpp)), w=2.0, o=0.5)
    designs = {
        "cbind": _design("cbind(incidence, size - incidence) ~ x + offset(o) + (x | herd)", d, family="binomial"),
        "single": _design("y ~ x + (1 | herd)", d, weights="w", offset="o", family="binomial"),
    }
    before = {k: [a.copy() for a in (des.X, des.y, des.wt, des.offset, des.terms[0].X)] for k, des in designs.items()}
    gc.collect()  # the design's own frames are gone: d's columns are no longer shared
    for c in ["incidence", "size", "y", "x", "w", "o"]:  # edit the caller's frame in place
        d.loc[0, c] = 123.0
        d.iloc[5, d.columns.get_loc(c)] = 99.0
    for k, des in designs.items():
        for a, b in zip((des.X, des.y, des.wt, des.offset, des.terms[0].X), before[k]):
            np.testing.assert_array_equal(a, b)
            assert not a.flags.writeable
        assert not des.terms[0].codes.flags.writeable and not des.rows.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            des.y[0] = 1.0


def test_design_y_is_not_a_view_of_the_column(cbpp):
    d = cbpp.assign(y=(cbpp.incidence > 0).astype(float))
    des = _design("y ~ period + (1 | herd)", d, family="binomial")
    col = d["y"].to_numpy()
    assert not np.shares_memory(des.y, col)
    assert not np.shares_memory(des.X, col)


# ----------------------------------------------------------------------------- newdata types


def test_predict_grouping_factor_given_as_integers(cbpp, cbpp_fit):
    new = cbpp.iloc[:6].copy()
    ref = cbpp_fit.predict(new)
    np.testing.assert_allclose(cbpp_fit.predict(new.assign(herd=new.herd.astype(int))), ref, rtol=1e-12)
    np.testing.assert_allclose(cbpp_fit.predict(new.assign(herd=new.herd.astype(float))), ref, rtol=1e-12)
    np.testing.assert_allclose(cbpp_fit.predict(new.assign(herd=new.herd.astype(str))), ref, rtol=1e-12)
    # the fixed-effect factor too: period fitted from categories '1'..'4', newdata ints
    np.testing.assert_allclose(cbpp_fit.predict(new.assign(period=new.period.astype(int))), ref, rtol=1e-12)


def test_predict_grouping_factor_of_another_type_is_named(cbpp):
    d = cbpp.assign(herd="h" + cbpp.herd.astype(str))
    fit = gb.fit(CBPP_F, d, family="binomial")
    with pytest.raises(DataError) as ei:
        fit.predict(cbpp.iloc[:3].assign(herd=[1, 2, 3]), allow_new_levels=True)
    msg = _msg(ei)
    assert "grouping factor 'herd' had levels 'h1', 'h10', 'h11', 'h12', 'h13', ... (15 in all)" in msg
    assert "newdata has integers that match none of them" in msg


def test_predict_fixed_factor_of_another_type_is_named(cbpp):
    d = cbpp.assign(p="p" + cbpp.period.astype(str))
    fit = gb.fit("cbind(incidence, size - incidence) ~ p + (1 | herd)", d, family="binomial")
    with pytest.raises(DataError) as ei:
        fit.predict(d.iloc[:3].assign(p=[1, 2, 3]))
    msg = _msg(ei)
    assert "'p' was a factor (levels 'p1', 'p2', 'p3', 'p4') when fitting but newdata has integers" in msg
    assert "is not in newdata" not in msg
    x = gb.fit("cbind(incidence, size - incidence) ~ x + (1 | herd)", d.assign(x=np.arange(len(d)) / 10), family="binomial")
    with pytest.raises(DataError, match=r"'x' was numeric when fitting but newdata has strings; "
                                        r"convert it with pd.to_numeric\(newdata\['x'\]\)"):
        x.predict(d.iloc[:2].assign(x=["a", "b"]))
