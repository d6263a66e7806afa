
import numpy as np
import pandas as pd
import pytest

from glmmbayes.errors import DataError, FormulaError
from glmmbayes.formula import (
    RandomTerm,
    Response,
    evaluate,
    fixed_design,
    fixed_design_newdata,
    parse_formula,
    r_deparse,
    r_to_python,
    term_matrix,
    term_matrix_newdata,
)


@pytest.fixture(scope="module")
def load():
    """The shipped data sets, with R's factor level order."""
    from glmmbayes import datasets

    def _load(name):
        return datasets.load(name)

    return _load


@pytest.fixture(scope="module")
def contraception(load):
    d = load("Contraception")
    d["ch"] = pd.Categorical(np.where(d["livch"] != "0", "Y", "N"), categories=["N", "Y"])
    return d


@pytest.fixture
def small():
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0],
            "f": ["b", "a", "c", "a"],  # strings: levels sorted like R
            "flag": [True, False, True, True],
            "g": pd.Categorical(["z", "y", "z", "y"], categories=["z", "y"]),
            "Days": [0, 1, 2, 3],
        }
    )


# ----------------------------------------------------------------------------- parsing


def test_parse_cbind_response():
    p = parse_formula("cbind(incidence, size - incidence) ~ period + (1 | herd)")
    assert p.response == Response("cbind", ("incidence", "size - incidence"))
    assert p.fixed == "period"
    assert p.offsets == ()
    assert p.random == (RandomTerm("1", ("herd",)),)
    assert p.random[0].group_name == "herd"


def test_parse_contraception():
    p = parse_formula("use ~ age * ch + I(age^2) + urban + (urban | district)")
    assert p.response == Response("single", ("use",))
    assert p.fixed == "age * ch + I(age^2) + urban"
    assert p.random == (RandomTerm("urban", ("district",)),)


def test_parse_expression_response():
    assert parse_formula("log(y) ~ x").response.exprs == ("log(y)",)
    assert parse_formula("y/n ~ x").response.exprs == ("y/n",)


def test_double_bar_expansion():
    p = parse_formula("y ~ x + (x || g)")
    assert p.fixed == "x"
    assert p.random == (RandomTerm("1", ("g",)), RandomTerm("0 + x", ("g",)))
    p = parse_formula("y ~ (0 + x || g)")
    assert p.random == (RandomTerm("0 + x", ("g",)),)
    p = parse_formula("y ~ (1 + x + z || g)")
    assert [str(t) for t in p.random] == ["(1 | g)", "(0 + x | g)", "(0 + z | g)"]


def test_nested_and_interaction_groups():
    p = parse_formula("y ~ (1 | g1/g2)")
    assert [t.group for t in p.random] == [("g1",), ("g1", "g2")]
    assert [t.group_name for t in p.random] == ["g1", "g1:g2"]
    p = parse_formula("y ~ (1 | g1/g2/g3)")
    assert [t.group_name for t in p.random] == ["g1", "g1:g2", "g1:g2:g3"]
    p = parse_formula("y ~ (1 | g1:g2)")
    assert p.random == (RandomTerm("1", ("g1", "g2")),)


def test_crossed_terms_keep_order():
    p = parse_formula("y ~ x + (1|id) + (Days | item) + (1|site)")
    assert [(t.lhs, t.group_name) for t in p.random] == [("1", "id"), ("Days", "item"), ("1", "site")]


def test_offsets():
    p = parse_formula("y ~ x + offset(log(n)) + (1 | g)")
    assert p.fixed == "x"
    assert p.offsets == ("log(n)",)
    p = parse_formula("y ~ offset(log(n)) + x + offset(z)")
    assert p.offsets == ("log(n)", "z")
    assert p.fixed == "x"


def test_no_intercept_kept_in_fixed():
    assert parse_formula("y ~ 0 + x").fixed == "0 + x"
    assert parse_formula("y ~ x + 0").fixed == "x + 0"
    assert parse_formula("y ~ x - 1").fixed == "x - 1"
    assert parse_formula("y ~ -1 + x").fixed == "-1 + x"


def test_only_random_terms():
    p = parse_formula("y ~ (1 | g)")
    assert p.fixed == "1"
    assert p.random == (RandomTerm("1", ("g",)),)


@pytest.mark.parametrize(
    "text, char, pos, words",
    [
        ("y ~ x + + z", "+", 8, "empty term"),
        ("y ~ x + 1 | g", "|", 10, "parentheses"),
        ("y ~ (x + (1|g)", "(", 4, "unbalanced"),
        ("y ~ x + (1|g))", ")", 13, "unbalanced"),
        ("y ~ x + ( | g)", "|", 10, "left of '|'"),
        ("y ~ x + (1 | )", "|", 11, "grouping"),
        ("y ~ x z", "z", 6, "unexpected"),
        ("y ~ x + $z", "$", 8, "unexpected"),
        ("y ~ x +", "+", 6, "empty term"),
        ("~ x", "~", 0, "response"),
        ("y ~ (1 | g | h)", "|", 11, "more than one"),
        ("cbind(a, ) ~ x", ")", 9, "empty argument"),
    ],
)
def test_error_positions(text, char, pos, words):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    err = info.value
    assert err.position == pos
    assert text[err.position] == char
    assert f"position {pos}" in str(err)
    assert words in str(err)


def test_missing_tilde():
    with pytest.raises(FormulaError, match="no '~'"):
        parse_formula("y x")


# ----------------------------------------------------------------------------- R <-> Python


def test_r_to_python():
    assert r_to_python("age^2").replace(" ", "") == "age**2"
    assert "True" in r_to_python("x == TRUE")
    assert r_to_python("T + F").replace(" ", "") == "T+F"  # T/F may be columns
    # R's & binds looser than comparison, Python's tighter: must be parenthesised
    assert eval(r_to_python("3 > 2 & 1 > 2"), {"__builtins__": {}}) is False


@pytest.mark.parametrize(
    "r, expected",
    [
        ("age^2", "age^2"),
        ("age ** 2", "age^2"),
        ("a/b", "a/b"),
        ("a*b", "a * b"),
        ("a+b", "a + b"),
        ("a-b", "a - b"),
        ("week>2", "week > 2"),
        ("a==b", "a == b"),
        ("f(x,y)", "f(x, y)"),
        ("-x", "-x"),
        ("TRUE", "TRUE"),
        ("2.0", "2"),
        ("(a+b)*c", "(a + b) * c"),
        ("a-(b-c)", "a - (b - c)"),
        ("x^(1/2)", "x^(1/2)"),
        ("log(x+1)", "log(x + 1)"),
        ("as.numeric(x)", "as.numeric(x)"),
    ],
)
def test_r_deparse(r, expected):
    assert r_deparse(r_to_python(r)) == expected


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_basic(small):
    np.testing.assert_allclose(evaluate("log(x) + x^2", small), np.log(small.x) + small.x**2)
    np.testing.assert_allclose(evaluate("pmin(x, 2)", small), [1, 2, 2, 2])
    assert evaluate("x > 2", small).dtype == bool
    g = evaluate("g", small)
    assert isinstance(g, pd.Categorical) and list(g.categories) == ["z", "y"]
    assert evaluate("f", small).dtype == object
    np.testing.assert_array_equal(evaluate("x > 1 & flag", small), [False, False, True, True])


def test_evaluate_unknown_column(small):
    with pytest.raises(DataError, match=r"unknown column 'xyz' in expression 'log\(xyz\)'") as info:
        evaluate("log(xyz)", small)
    assert "available columns: x, f, flag" in str(info.value)


def test_evaluate_refuses_attributes(small):
    with pytest.raises((DataError, FormulaError)):
        evaluate("x.__class__", small)
    with pytest.raises(DataError, match="unknown function 'open'"):
        evaluate("open(x)", small)


# ----------------------------------------------------------------------------- designs


def test_names_small(small):
    fd = fixed_design("x + f + flag + g", small)
    assert fd.names == ("(Intercept)", "x", "fb", "fc", "flagTRUE", "gy")
    np.testing.assert_array_equal(fd.X[:, 4], small.flag.astype(float))
    assert fd.X.dtype == np.float64 and fd.X.flags.c_contiguous


def test_names_contraception(contraception):
    fd = fixed_design("age + I(age^2) + urban + livch", contraception)
    assert fd.names == ("(Intercept)", "age", "I(age^2)", "urbanY", "livch1", "livch2", "livch3+")
    np.testing.assert_allclose(fd.X[:, 2], contraception.age**2)
    np.testing.assert_array_equal(fd.X[:, 6], (contraception.livch == "3+").astype(float))

    fd = fixed_design("age * ch + I(age^2) + urban", contraception)
    assert fd.names == ("(Intercept)", "age", "chY", "I(age^2)", "urbanY", "age:chY")
    np.testing.assert_allclose(fd.X[:, 5], contraception.age * (contraception.ch == "Y"))

    fd = fixed_design("0 + livch", contraception)
    assert fd.names == ("livch0", "livch1", "livch2", "livch3+")
    np.testing.assert_array_equal(fd.X.sum(axis=1), 1.0)


def test_interaction_variable_order(contraception):
    # R orders variables inside a term by first appearance in the formula
    fd = fixed_design("age + urban + urban:age", contraception)
    assert fd.names == ("(Intercept)", "age", "urbanY", "age:urbanY")


def test_names_bacteria(load):
    b = load("bacteria")
    fd = fixed_design("trt + I(week > 2)", b)
    assert fd.names == ("(Intercept)", "trtdrug", "trtdrug+", "I(week > 2)TRUE")
    np.testing.assert_array_equal(fd.X[:, 3], (b.week > 2).astype(float))
    np.testing.assert_array_equal(fd.X[:, 1], (b.trt == "drug").astype(float))


def test_names_cbpp(load):
    d = load("cbpp")
    fd = fixed_design("period", d)
    assert fd.names == ("(Intercept)", "period2", "period3", "period4")
    np.testing.assert_array_equal(fd.X[:, 3], (d.period == "4").astype(float))


def test_term_matrix(small, contraception):
    X, names, _ = term_matrix("1", small)
    assert names == ("(Intercept)",) and X.shape == (4, 1) and np.all(X == 1)
    X, names, _ = term_matrix("urban", contraception)
    assert names == ("(Intercept)", "urbanY")
    np.testing.assert_array_equal(X[:, 1], (contraception.urban == "Y").astype(float))
    X, names, _ = term_matrix("0 + x", small)
    assert names == ("x",)
    np.testing.assert_array_equal(X[:, 0], small.x)
    X, names, state = term_matrix("Days", small)
    assert names == ("(Intercept)", "Days")
    np.testing.assert_array_equal(X[:, 1], small.Days)
    new = pd.DataFrame({"Days": [10, 20]})
    np.testing.assert_array_equal(term_matrix_newdata(state, new), [[1, 10], [1, 20]])


def test_newdata_reproduces_and_rejects_unseen(contraception):
    fd = fixed_design("age * ch + I(age^2) + urban + livch", contraception)
    np.testing.assert_array_equal(fixed_design_newdata(fd, contraception), fd.X)
    sub = contraception.iloc[[5, 1, 3]].reset_index(drop=True)
    np.testing.assert_array_equal(fixed_design_newdata(fd, sub), fd.X[[5, 1, 3]])
    bad = sub.copy()
    bad["livch"] = ["0", "9", "1"]
    with pytest.raises(DataError, match="'livch' has level '9'"):
        fixed_design_newdata(fd, bad)


def test_newdata_string_levels_keep_fit_encoding(small):
    fd = fixed_design("f", small)
    new = pd.DataFrame({"f": ["c"]})  # only one level present: must still map to column fc
    np.testing.assert_array_equal(fixed_design_newdata(fd, new), [[1, 0, 1]])


def test_unused_levels_dropped_and_zero_intercept(small):
    d = small.assign(g=pd.Categorical(["z", "z", "z", "y"], categories=["w", "z", "y"]))
    assert fixed_design("g", d).names == ("(Intercept)", "gy")  # unused 'w' dropped as lme4 does
    assert fixed_design("x + 0", d).names == ("x",)
    assert fixed_design("1", d).X.shape == (4, 1)


# ----------------------------------------------------------------------------- package layout


def test_formula_package_imports_no_private_names():
    """Modules of glmmbayes.formula share helpers only under public names."""
    import ast
    from pathlib import Path

    import glmmbayes.formula as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {node.module}"


def test_formula_package_reexports():
    from glmmbayes import formula as fm

    for name in fm.__all__:
        assert callable(getattr(fm, name)), name
