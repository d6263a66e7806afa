"""Tests of glmmbayes.datasets: bundled R data sets with R's factor level order."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from glmmbayes import datasets
from glmmbayes.errors import DataError

ROWS = {
    "cbpp": 56,
    "Contraception": 1934,
    "sleepstudy": 180,
    "VerbAgg": 7584,
    "grouseticks": 403,
    "bacteria": 220,
    "guImmun": 2159,
}

COLUMNS = {
    "cbpp": ["herd", "incidence", "size", "period"],
    "Contraception": ["woman", "district", "use", "livch", "age", "urban"],
    "sleepstudy": ["Reaction", "Days", "Subject"],
    "VerbAgg": ["Anger", "Gender", "item", "resp", "id", "btype", "situ", "mode", "r2"],
    "grouseticks": ["INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION", "cHEIGHT"],
    "bacteria": ["y", "ap", "hilo", "week", "ID", "trt"],
    "guImmun": ["kid", "mom", "comm", "immun", "kid2p", "mom25p", "ord", "ethn", "momEd", "husEd",
                "momWork", "rural", "pcInd81"],
}

NUMERIC = {
    "cbpp": {"incidence": "int", "size": "int"},
    "Contraception": {"age": "float"},
    "sleepstudy": {"Reaction": "float", "Days": "int"},
    "VerbAgg": {"Anger": "int"},
    "grouseticks": {"TICKS": "int", "HEIGHT": "int", "cHEIGHT": "float"},
    "bacteria": {"week": "int"},
    "guImmun": {"pcInd81": "float"},
}


def _levels():
    text = resources.files("glmmbayes.datasets").joinpath("levels.json").read_text(encoding="utf-8")
    return json.loads(text)


def test_names():
    assert datasets.names() == ("bacteria", "cbpp", "Contraception", "grouseticks", "guImmun", "InstEval", "Oats", "Owls", "Salamanders",
                                "sleepstudy", "VerbAgg")
    assert set(_levels()) == set(datasets.names())


@pytest.mark.parametrize("name", sorted(ROWS))
def test_rows_and_columns(name):
    df = datasets.load(name)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == ROWS[name]
    assert list(df.columns) == COLUMNS[name]
    assert not df.isna().any().any()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_factor_levels_match_r(name):
    df = datasets.load(name)
    levels = _levels()[name]
    for col, lv in levels.items():
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
        assert list(df[col].cat.categories) == lv, col
        assert not df[col].cat.ordered
    # every column is either a factor or numeric
    for col in df.columns:
        if col not in levels:
            assert pd.api.types.is_numeric_dtype(df[col]), col


@pytest.mark.parametrize("name", sorted(ROWS))
def test_numeric_dtypes(name):
    df = datasets.load(name)
    for col, kind in NUMERIC[name].items():
        if kind == "int":
            assert df[col].dtype == np.int64, col
        else:
            assert df[col].dtype == np.float64, col


def test_specific_levels():
    assert list(datasets.load("bacteria")["trt"].cat.categories) == ["placebo", "drug", "drug+"]
    con = datasets.load("Contraception")
    assert list(con["livch"].cat.categories) == ["0", "1", "2", "3+"]
    district = list(con["district"].cat.categories)
    assert len(district) == 60
    assert "54" not in district
    assert district[:3] == ["1", "2", "3"] and "61" in district
    assert con["woman"].cat.categories[9] == "10"  # ids stay strings in R's order, not ints
    assert list(datasets.load("bacteria")["ID"].cat.categories[:2]) == ["X01", "X02"]
    assert list(datasets.load("VerbAgg")["mode"].cat.categories) == ["want", "do"]
    assert list(datasets.load("VerbAgg")["resp"].cat.categories) == ["no", "perhaps", "yes"]
    assert list(datasets.load("grouseticks")["YEAR"].cat.categories) == ["95", "96", "97"]


def test_spot_values():
    cbpp = datasets.load("cbpp")
    row = cbpp.iloc[0]
    assert row["herd"] == "1" and row["period"] == "1"
    assert row["incidence"] == 2 and row["size"] == 14
    assert cbpp["size"].sum() > cbpp["incidence"].sum()

    con = datasets.load("Contraception")
    assert con.iloc[0]["livch"] == "3+"
    assert con.iloc[0]["age"] == pytest.approx(18.44)
    assert con.iloc[0]["urban"] == "Y" and con.iloc[0]["use"] == "N"

    sleep = datasets.load("sleepstudy")
    assert sleep.iloc[0]["Reaction"] == pytest.approx(249.56)
    assert sleep.iloc[0]["Subject"] == "308"
    assert sleep.groupby("Subject", observed=True).size().eq(10).all()

    verb = datasets.load("VerbAgg")
    assert verb["id"].nunique() == 316 and verb["item"].nunique() == 24
    assert ((verb["r2"] == "Y") == (verb["resp"] != "no")).all()

    grouse = datasets.load("grouseticks")
    assert grouse.iloc[0]["BROOD"] == "501" and grouse.iloc[0]["TICKS"] == 0
    assert grouse["TICKS"].min() >= 0

    bac = datasets.load("bacteria")
    assert bac.iloc[0]["ID"] == "X01" and bac.iloc[0]["y"] == "y"
    assert sorted(bac["week"].unique()) == [0, 2, 4, 6, 11]


@pytest.mark.parametrize("alias", ["cbpp", "CBPP", "contraception", "CONTRACEPTION", "verbagg", "VerbAgg",
                                   "SleepStudy", "GrouseTicks", "Bacteria"])
def test_case_insensitive(alias):
    canonical = {n.lower(): n for n in datasets.names()}[alias.lower()]
    pd.testing.assert_frame_equal(datasets.load(alias), datasets.load(canonical))


@pytest.mark.parametrize("bad", ["nope", "", "cbpp.csv", 3])
def test_unknown_name(bad):
    with pytest.raises(DataError) as info:
        datasets.load(bad)
    for name in datasets.names():
        assert name in str(info.value)
    with pytest.raises(DataError):
        datasets.describe(bad)


def test_copies_are_independent():
    a = datasets.load("cbpp")
    a.loc[0, "incidence"] = 999
    a["herd"] = a["herd"].cat.rename_categories(lambda s: "h" + s)
    a["extra"] = 1
    b = datasets.load("cbpp")
    assert b.loc[0, "incidence"] == 2
    assert list(b["herd"].cat.categories)[0] == "1"
    assert "extra" not in b.columns
    assert b is not datasets.load("cbpp")


@pytest.mark.parametrize("name", sorted(ROWS))
def test_describe(name):
    text = datasets.describe(name)
    assert isinstance(text, str) and "\n" not in text
    assert name in text
    assert str(ROWS[name]) in text
    assert any(pkg in text for pkg in ("lme4", "mlmRev", "MASS"))
    assert "~" in text
    for col in COLUMNS[name]:
        assert col in text, col


def test_describe_mentions_derived_columns_and_formulas():
    assert "cbind(incidence, size - incidence) ~ period + (1 | herd)" in datasets.describe("cbpp")
    assert "obs" in datasets.describe("cbpp")
    con = datasets.describe("contraception")
    assert "use ~ age + I(age^2) + urban + livch + (1 | district)" in con
    assert "ch = livch != \"0\"" in con
    assert "Reaction ~ Days + (Days | Subject)" in datasets.describe("sleepstudy")
    assert "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)" in datasets.describe("verbagg")
    assert ("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
            in datasets.describe("grouseticks"))
    assert "y ~ trt + I(week > 2) + (1 | ID)" in datasets.describe("bacteria")


def test_package_is_self_contained():
    source = resources.files("glmmbayes.datasets").joinpath("__init__.py").read_text(encoding="utf-8")
    assert "shared/" not in source and "reference" not in source
    for name in datasets.names():
        assert resources.files("glmmbayes.datasets").joinpath(f"{name}.csv.gz").is_file()
