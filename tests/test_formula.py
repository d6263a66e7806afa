
import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb

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
    assert [t.group for t in p.random] == [("g1",), ("g2", "g1")]
    assert [t.group_name for t in p.random] == ["g1", "g2:g1"]  # lme4: (1 | g2:g1) + (1 | g1)
    p = parse_formula("y ~ (1 | g1/g2/g3)")
    assert [t.group_name for t in p.random] == ["g1", "g2:g1", "g3:g2:g1"]
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


@pytest.mark.parametrize("values, categories", [
    (["b", "a", "c", "a"], ["c", "a", "b", "z"]),  # unused 'z', category order not sorted
    ([3, 1, 2, 3], [1, 2, 3, 7]),
    ([0.5, 1.5, 0.5, 1.5], None),
    ([True, False, False, True], None),
])
def test_categorical_grouping_factor_keeps_used_levels_in_category_order(values, categories):
    """A categorical grouping factor's levels (read off its codes) are its used categories in
    category order, labelled as R would, the same as an interaction with a constant factor
    (the general path)."""
    d = pd.DataFrame({"g": pd.Categorical(values * 5, categories=categories), "k": pd.Categorical(["k"] * 20),
                      "x": np.arange(20.0)})
    d["y"] = np.sin(d.x) + d.g.cat.codes
    (t,) = gb.design("y ~ x + (1 | g)", d).terms
    (t2,) = gb.design("y ~ x + (1 | g:k)", d).terms
    np.testing.assert_array_equal(t.codes, t2.codes)
    assert t.levels == tuple(lv.removesuffix(":k") for lv in t2.levels)
    used = [c for c in d.g.cat.categories if c in set(values)]
    assert len(t.levels) == len(used)
    assert [t.levels[c] for c in t.codes[:4]] == [gb.formula.level_text(v) for v in values]


@pytest.mark.parametrize("values, categories", [(["b", "a", "b", "c"], ["c", "z", "b", "a"]),
                                                ([3, 1, 3, 2], [2, 5, 3, 1])])
def test_categorical_fixed_factor_keeps_used_levels_in_category_order(values, categories):
    """A Categorical in the fixed part (levels and codes read off its codes): its used
    categories in category order, the first the reference, the indicator columns named and
    filled as for the same values given as a factor of exactly those levels."""
    d = pd.DataFrame({"f": pd.Categorical(values * 5, categories=categories), "x": np.arange(20.0)})
    d["y"] = np.sin(d.x)
    used = [c for c in categories if c in set(values)]
    d2 = d.assign(f=pd.Categorical(values * 5, categories=used))
    X, X2 = fixed_design("f + x", d), fixed_design("f + x", d2)
    assert X.names == X2.names == ("(Intercept)",) + tuple(f"f{gb.formula.level_text(c)}" for c in used[1:]) + ("x",)
    np.testing.assert_array_equal(X.X, X2.X)
    np.testing.assert_array_equal(X.X[:, 1], np.array(values * 5) == used[1])


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


# ----------------------------------------------------------------------------- R's model.matrix


@pytest.fixture(scope="module")
def abc():
    """The data frame `d` of the R calls below (factors a, b, c; numbers x, z)."""
    return pd.DataFrame(
        {
            "a": ["a1", "a2", "a3", "a1", "a2", "a3", "a1", "a2", "a3", "a1", "a2", "a3"],
            "b": ["b1", "b1", "b2", "b2", "b3", "b3", "b1", "b2", "b3", "b3", "b2", "b1"],
            "c": ["c1", "c2", "c1", "c2", "c1", "c2", "c2", "c1", "c2", "c1", "c2", "c1"],
            "x": [0.5, -1.2, 2.3, 0.7, -0.4, 1.9, -2.2, 0.1, 1.4, -0.9, 0.3, 2.8],
            "z": [3.1, 2.4, 1.8, 4.6, 2.9, 3.3, 1.2, 4.1, 2.2, 3.8, 1.5, 2.6],
        }
    )


# colnames(model.matrix(as.formula(paste("~", f)), d)) in R 4.2.2, with
# d <- data.frame(a = factor(c("a1","a2","a3","a1","a2","a3","a1","a2","a3","a1","a2","a3")),
#   b = factor(c("b1","b1","b2","b2","b3","b3","b1","b2","b3","b3","b2","b1")),
#   c = factor(c("c1","c2","c1","c2","c1","c2","c2","c1","c2","c1","c2","c1")),
#   x = c(0.5, -1.2, 2.3, 0.7, -0.4, 1.9, -2.2, 0.1, 1.4, -0.9, 0.3, 2.8),
#   z = c(3.1, 2.4, 1.8, 4.6, 2.9, 3.3, 1.2, 4.1, 2.2, 3.8, 1.5, 2.6))
R_MODEL_MATRIX_NAMES = [
    ("x + b:a + a", ["(Intercept)", "x", "aa2", "aa3", "bb2:aa1", "bb3:aa1", "bb2:aa2", "bb3:aa2", "bb2:aa3", "bb3:aa3"]),
    ("a*b - a", ["(Intercept)", "bb2", "bb3", "aa2:bb1", "aa3:bb1", "aa2:bb2", "aa3:bb2", "aa2:bb3", "aa3:bb3"]),
    ("x*a - a", ["(Intercept)", "x", "x:aa2", "x:aa3"]),
    ("a*b*x", ["(Intercept)", "aa2", "aa3", "bb2", "bb3", "x", "aa2:bb2", "aa3:bb2", "aa2:bb3", "aa3:bb3", "aa2:x", "aa3:x", "bb2:x", "bb3:x", "aa2:bb2:x", "aa3:bb2:x", "aa2:bb3:x", "aa3:bb3:x"]),
    ("b + x*c*a", ["(Intercept)", "bb2", "bb3", "x", "cc2", "aa2", "aa3", "x:cc2", "x:aa2", "x:aa3", "cc2:aa2", "cc2:aa3", "x:cc2:aa2", "x:cc2:aa3"]),
    ("a:b", ["(Intercept)", "aa1:bb1", "aa2:bb1", "aa3:bb1", "aa1:bb2", "aa2:bb2", "aa3:bb2", "aa1:bb3", "aa2:bb3", "aa3:bb3"]),
    ("x + a/x", ["(Intercept)", "x", "aa2", "aa3", "x:aa2", "x:aa3"]),
    ("x + a:x + b:a", ["(Intercept)", "x", "x:aa2", "x:aa3", "aa1:bb2", "aa2:bb2", "aa3:bb2", "aa1:bb3", "aa2:bb3", "aa3:bb3"]),
    ("a:c + b", ["(Intercept)", "bb2", "bb3", "aa1:cc1", "aa2:cc1", "aa3:cc1", "aa1:cc2", "aa2:cc2", "aa3:cc2"]),
    ("x - b + a:b", ["(Intercept)", "x", "bb1:aa1", "bb2:aa1", "bb3:aa1", "bb1:aa2", "bb2:aa2", "bb3:aa2", "bb1:aa3", "bb2:aa3", "bb3:aa3"]),
    ("a:b + a:c", ["(Intercept)", "aa1:bb1", "aa2:bb1", "aa3:bb1", "aa1:bb2", "aa2:bb2", "aa3:bb2", "aa1:bb3", "aa2:bb3", "aa3:bb3", "aa1:cc2", "aa2:cc2", "aa3:cc2"]),
    ("0 + x:a + b", ["bb1", "bb2", "bb3", "x:aa1", "x:aa2", "x:aa3"]),
    ("c + a %in% c", ["(Intercept)", "cc2", "cc1:aa2", "cc2:aa2", "cc1:aa3", "cc2:aa3"]),
    ("b:a - 1", ["bb1:aa1", "bb2:aa1", "bb3:aa1", "bb1:aa2", "bb2:aa2", "bb3:aa2", "bb1:aa3", "bb2:aa3", "bb3:aa3"]),
    ("x:z + a:x", ["(Intercept)", "x:z", "x:aa2", "x:aa3"]),
    ("0 + a:b + c", ["cc1", "cc2", "aa1:bb1", "aa2:bb1", "aa3:bb1", "aa1:bb2", "aa2:bb2", "aa3:bb2", "aa1:bb3", "aa2:bb3", "aa3:bb3"]),
    ("a*b*c - a:b:c - b", ["(Intercept)", "aa2", "aa3", "cc2", "aa1:bb2", "aa2:bb2", "aa3:bb2", "aa1:bb3", "aa2:bb3", "aa3:bb3", "aa2:cc2", "aa3:cc2", "bb2:cc2", "bb3:cc2"]),
    ("z:x + x", ["(Intercept)", "x", "z:x"]),
    ("x:a:z + z + a", ["(Intercept)", "z", "aa2", "aa3", "x:aa1:z", "x:aa2:z", "x:aa3:z"]),
]


def _column_from_name(name: str, d: pd.DataFrame) -> np.ndarray:
    """The column R's name describes: a product of numeric columns and level indicators."""
    if name == "(Intercept)":
        return np.ones(len(d))
    out = np.ones(len(d))
    for part in name.split(":"):
        if part in d.columns:
            out = out * d[part].to_numpy(dtype=float)
        else:  # factor `a` with level `a2` is written "aa2"
            out = out * (d[part[0]] == part[1:]).to_numpy(dtype=float)
    return out


@pytest.mark.parametrize("rhs, expected", R_MODEL_MATRIX_NAMES, ids=[f for f, _ in R_MODEL_MATRIX_NAMES])
def test_names_and_coding_match_r_model_matrix(abc, rhs, expected):
    fd = fixed_design(rhs, abc)
    assert list(fd.names) == expected
    for j, name in enumerate(fd.names):
        np.testing.assert_array_equal(fd.X[:, j], _column_from_name(name, abc), err_msg=name)


def test_interaction_named_in_order_of_first_appearance():
    # R: colnames(model.matrix(~ trt + lbase*trt, data.frame(trt = factor(c("placebo",
    #   "progabide", "placebo", "progabide")), lbase = c(0.1, -0.3, 0.5, 0.2))))
    # -> "(Intercept)" "trtprogabide" "lbase" "trtprogabide:lbase"; and for ~ lbase*trt + trt:
    # "(Intercept)" "lbase" "trtprogabide" "lbase:trtprogabide"
    d = pd.DataFrame({"trt": ["placebo", "progabide", "placebo", "progabide"], "lbase": [0.1, -0.3, 0.5, 0.2]})
    fd = fixed_design("trt + lbase*trt", d)
    assert fd.names == ("(Intercept)", "trtprogabide", "lbase", "trtprogabide:lbase")
    np.testing.assert_array_equal(fd.X[:, 3], [0, -0.3, 0, 0.2])
    assert fixed_design("lbase*trt + trt", d).names == ("(Intercept)", "lbase", "trtprogabide", "lbase:trtprogabide")
    # the same names reach the fitted model
    rng = np.random.default_rng(1)
    big = pd.DataFrame({"trt": np.repeat(["placebo", "progabide"], 40), "lbase": rng.normal(size=80),
                        "subject": np.tile(np.arange(20), 4)})
    big["y"] = rng.poisson(3, size=80)
    des = gb_design("y ~ trt + lbase * trt + (1 | subject)", big, family="poisson")
    assert des.fixef_names == ("(Intercept)", "trtprogabide", "lbase", "trtprogabide:lbase")


def gb_design(formula, data, **kw):
    return gb.design(formula, data, **kw)


# ----------------------------------------------------------------------------- transforms

# R: x <- c(1, 2, 4, 7, 11); print(poly(x, 3), digits = 17)
R_POLY3 = [
    [-0.49236596391733101, 0.475997296813150672, -0.44038550605054411],
    [-0.36927447293799798, 0.079332882802191779, 0.33028912953790807],
    [-0.12309149097933275, -0.449553002545753366, 0.55048188256318042],
    [0.24618298195866542, -0.581774473882739507, -0.60553007081949839],
    [0.73854894587599640, 0.475997296813150617, 0.16514456476895417],
]
# R: print(predict(poly(x, 2), c(3, 5)), digits = 17)
R_POLY2_AT_3_5 = [[-0.24618298195866545, -0.22918388365077616], [0.0, -0.58177447388273951]]
# R: print(scale(x)[, 1], digits = 17); attr(scale(x), "scaled:scale") is 4.0620192023179804
R_SCALE = [-0.98473192783466179, -0.73854894587599640, -0.24618298195866545, 0.49236596391733090, 1.47709789175199280]
# R: print(scale(x, center = FALSE)[, 1], digits = 17)
R_SCALE_NO_CENTER = [0.14471492105848432, 0.28942984211696865, 0.57885968423393730, 1.01300444740939022, 1.59186413164332752]


@pytest.fixture
def five():
    return pd.DataFrame({"x": [1.0, 2.0, 4.0, 7.0, 11.0], "n": np.array([1, 2, 4, 7, 11], dtype="int32"),
                         "f": ["u", "v", "u", "w", "v"]})


def test_poly_is_r_poly_sign_included(five):
    fd = fixed_design("poly(x, 3)", five)
    assert fd.names == ("(Intercept)", "poly(x, 3)1", "poly(x, 3)2", "poly(x, 3)3")
    np.testing.assert_allclose(fd.X[:, 1:], R_POLY3, rtol=1e-13, atol=1e-15)
    fd2 = fixed_design("poly(n, degree = 2)", five)  # integer column, named argument
    assert fd2.names == ("(Intercept)", "poly(n, degree = 2)1", "poly(n, degree = 2)2")
    np.testing.assert_allclose(fd2.X[:, 1:], np.asarray(R_POLY3)[:, :2], rtol=1e-13, atol=1e-15)
    # new data are evaluated with the fitted recurrence coefficients, as R's predict.poly
    new = fixed_design_newdata(fd2, pd.DataFrame({"n": [3, 5]}))
    np.testing.assert_allclose(new[:, 1:], R_POLY2_AT_3_5, rtol=1e-13, atol=1e-15)
    raw = fixed_design("poly(x, 2, raw = TRUE)", five)
    assert raw.names == ("(Intercept)", "poly(x, 2, raw = TRUE)1", "poly(x, 2, raw = TRUE)2")
    np.testing.assert_array_equal(raw.X[:, 2], five.x**2)


def test_scale_and_center_are_r_scale(five):
    fd = fixed_design("scale(x) + scale(n, center = FALSE) + center(x)", five)
    assert fd.names == ("(Intercept)", "scale(x)", "scale(n, center = FALSE)", "center(x)")
    np.testing.assert_allclose(fd.X[:, 1], R_SCALE, rtol=1e-14)
    np.testing.assert_allclose(fd.X[:, 2], R_SCALE_NO_CENTER, rtol=1e-14)
    np.testing.assert_allclose(fd.X[:, 3], five.x - 5.0, rtol=1e-14)
    new = fixed_design_newdata(fd, pd.DataFrame({"x": [3.0], "n": [3]}))
    np.testing.assert_allclose(new[0, 1], (3 - 5) / 4.0620192023179804, rtol=1e-14)  # fitted centre and scale
    np.testing.assert_allclose(new[0, 3], -2.0)


def test_stateful_terms_reproduce_the_training_matrix_exactly(contraception):
    rhs = "scale(age) + poly(age, 2) + center(age):urban + log1p(age + 20) + livch"
    fd = fixed_design(rhs, contraception)
    assert fd.names[:5] == ("(Intercept)", "scale(age)", "poly(age, 2)1", "poly(age, 2)2", "log1p(age + 20)")
    np.testing.assert_array_equal(fixed_design_newdata(fd, contraception), fd.X)
    rows = [7, 3, 100]
    sub = contraception.iloc[rows].reset_index(drop=True)
    np.testing.assert_array_equal(fixed_design_newdata(fd, sub), fd.X[rows])


def test_stateful_terms_in_a_fit_predict_on_new_data(load):
    # lme4 1.1.31: m <- lmer(Reaction ~ poly(Days, 2) + (1 | Subject), sleepstudy, REML = FALSE)
    # fixef(m); predict(m, newdata = data.frame(Days = c(0.5, 4.5, 10),
    #   Subject = factor(c("308", "309", "372"))))
    s = load("sleepstudy")
    fit = gb.fit("Reaction ~ poly(Days, 2) + (1 | Subject)", s, family="gaussian", REML=False)
    np.testing.assert_allclose(fit.fixef, [298.5078916666673, 403.3641678552184, 32.8557879762132], rtol=1e-6)
    assert list(fit.fixef.index) == ["(Intercept)", "poly(Days, 2)1", "poly(Days, 2)2"]
    nd = pd.DataFrame({"Days": [0.5, 4.5, 10], "Subject": ["308", "309", "372"]})
    np.testing.assert_allclose(fit.predict(nd), [299.906646638695, 218.121727467476, 381.551464079756], rtol=1e-6)
    np.testing.assert_array_equal(fit.design.new_fixed(s), fit.design.X)
    # lme4: lmer(Reaction ~ scale(Days) + (scale(Days) | Subject), sleepstudy, REML = FALSE),
    # predictions at the same newdata (the random slope's covariate is scaled by the fit too)
    fit = gb.fit("Reaction ~ scale(Days) + (scale(Days) | Subject)", s, family="gaussian", REML=False)
    np.testing.assert_allclose(fit.predict(nd), [263.992319231312, 219.561179337744, 381.303816019539], rtol=1e-6)
    np.testing.assert_array_equal(fit.design.new_fixed(s), fit.design.X)


def test_log1p_C_and_quoted_names(five):
    d = five.assign(**{"my col": five.x * 10})
    fd = fixed_design("log1p(x) + C(f) + `my col`", d)
    assert fd.names == ("(Intercept)", "log1p(x)", "C(f)v", "C(f)w", "`my col`")
    np.testing.assert_allclose(fd.X[:, 1], np.log1p(five.x))
    np.testing.assert_array_equal(fd.X[:, 2], (five.f == "v").astype(float))
    # formulaic's Q('...') is the backquoted name: same variable, same R name
    fq = fixed_design("log1p(x) + C(f) + Q('my col')", d)
    assert fq.names == fd.names
    np.testing.assert_array_equal(fq.X, fd.X)
    assert fixed_design("Q(\"my col\"):f", d).names == ("(Intercept)", "`my col`:fu", "`my col`:fv", "`my col`:fw")
    # C(x) of numbers is a factor
    assert fixed_design("C(n)", five).names == ("(Intercept)", "C(n)2", "C(n)4", "C(n)7", "C(n)11")


@pytest.mark.parametrize(
    "rhs, words",
    [
        ("poly(x, 5)", r"'poly\(x, 5\)': 'degree' must be less than number of unique points \(5"),
        ("scale(f)", r"scale\(\) needs a numeric variable, but 'f'"),
        ("log(scale(x))", r"scale\(\) must be a term of the formula's right-hand side"),
        ("poly(x, n, degree = 2)", r"poly\(\) in .poly\(x, n, degree = 2\).: polynomials of several variables"),
        ("scale(x, TRUE, FALSE, 3)", r"too many arguments; scale\(\) takes one variable and center, scale"),
        ("poly(x, 2, coefs = 1)", r"unsupported argument 'coefs'"),
        ("poly(x, degree = d)", r"argument 'degree' must be a constant, got 'd'"),
        ("poly(x, 1.5)", r"'degree' must be a whole number"),
        ("C(f, sum)", r"C\(\) with a contrasts argument is not supported"),
    ],
)
def test_transform_errors_are_named(five, rhs, words):
    with pytest.raises(DataError, match=words):
        fixed_design(rhs, five)


def test_term_only_functions_refused_in_expressions(five):
    with pytest.raises(DataError, match=r"poly\(\) must be a term"):
        evaluate("poly(x, 2) + 1", five)


# ----------------------------------------------------------------------------- dtype safety


def test_arithmetic_is_on_float64_whatever_the_integer_dtype():
    d = pd.DataFrame({"n": np.array([3, 5, 2], dtype="uint8"), "k": np.array([1, 2, 4], dtype="uint8"),
                      "m": pd.array([3, None, 2], dtype="Int64"), "big": np.array([2**62, 1, 1], dtype="int64")})
    np.testing.assert_array_equal(evaluate("n - k", d), [2, 3, -2])  # no wrap-around to 254
    assert evaluate("n - k", d).dtype == np.float64
    np.testing.assert_array_equal(evaluate("m * 2", d), [6, np.nan, 4])  # pd.NA is missing
    np.testing.assert_array_equal(evaluate("k^2", d), [1, 4, 16])
    np.testing.assert_array_equal(evaluate("-n", d), [-3, -5, -2])
    assert evaluate("big * 4", d)[0] == 2.0**64  # no int64 overflow


def test_logicals_count_as_numbers_in_arithmetic(small):
    np.testing.assert_array_equal(evaluate("flag + flag", small), [2, 0, 2, 2])  # not True | True
    np.testing.assert_array_equal(evaluate("flag - 1", small), [0, -1, 0, 0])
    np.testing.assert_array_equal(evaluate("!flag", small), [False, True, False, False])
    nullable = small.assign(flag=pd.array([True, None, False, True], dtype="boolean"))
    np.testing.assert_array_equal(evaluate("flag * 2", nullable), [2, np.nan, 0, 2])
    # a logical variable is still a factor in a model (R: flagTRUE)
    assert fixed_design("flag", small).names == ("(Intercept)", "flagTRUE")


@pytest.mark.parametrize("expr", ["I(f^2)", "log(f)", "f * 2", "f + x", "-f", "sqrt(g)", "f & flag"])
def test_arithmetic_on_text_or_factor_is_named(small, expr):
    with pytest.raises(DataError) as info:
        evaluate(expr, small)
    msg = str(info.value)
    assert f"expression '{expr}' needs numbers" in msg
    assert "column 'f' holds text" in msg or "column 'g' holds a factor" in msg


def test_evaluate_returns_copies(small):
    v = evaluate("x", small)
    v[0] = 99.0
    assert small.x[0] == 1.0
    np.testing.assert_array_equal(evaluate("x", small), small.x)


# ----------------------------------------------------------------------------- new data of another type


def test_factor_newdata_integers_match_level_text():
    d = pd.DataFrame({"h": ["1", "2", "10", "2"], "x": [1.0, 2.0, 3.0, 4.0]})
    fd = fixed_design("h + x", d)
    assert fd.names == ("(Intercept)", "h10", "h2", "x")  # R sorts strings: "1" < "10" < "2"
    as_int = fixed_design_newdata(fd, pd.DataFrame({"h": [2, 10, 1], "x": [0.0, 0.0, 0.0]}))
    as_str = fixed_design_newdata(fd, pd.DataFrame({"h": ["2", "10", "1"], "x": [0.0, 0.0, 0.0]}))
    np.testing.assert_array_equal(as_int, as_str)
    with pytest.raises(DataError, match=r"'h' has level '7' in newdata that was not seen when fitting"):
        fixed_design_newdata(fd, pd.DataFrame({"h": [2, 7], "x": [0.0, 0.0]}))


def test_numeric_factor_levels_match_strings_in_newdata():
    d = pd.DataFrame({"n": np.array([1, 2, 3, 2]), "x": [1.0, 2.0, 3.0, 4.0]})
    fd = fixed_design("factor(n)", d)
    assert fd.names == ("(Intercept)", "factor(n)2", "factor(n)3")  # R: as.character(2) is "2"
    np.testing.assert_array_equal(
        fixed_design_newdata(fd, pd.DataFrame({"n": ["3", "1"]})), fixed_design_newdata(fd, pd.DataFrame({"n": [3, 1]}))
    )


def test_newdata_of_another_type_is_named():
    d = pd.DataFrame({"f": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]})
    fd = fixed_design("f + x", d)
    with pytest.raises(DataError) as info:
        fixed_design_newdata(fd, pd.DataFrame({"f": [1, 2], "x": [1.0, 2.0]}))
    msg = str(info.value)
    assert "'f' was a factor (levels 'a', 'b') when fitting but newdata has integers" in msg
    assert "give newdata['f'] as the fitted levels" in msg
    with pytest.raises(DataError, match=r"'x' was numeric when fitting but newdata has strings; "
                                         r"convert it with pd.to_numeric\(newdata\['x'\]\)"):
        fixed_design_newdata(fd, pd.DataFrame({"f": ["a"], "x": pd.array(["1.5"], dtype="string")}))
    flags = fixed_design("flag", pd.DataFrame({"flag": [True, False]}))
    with pytest.raises(DataError, match=r"'flag' was logical \(FALSE/TRUE\) when fitting but newdata has strings"):
        fixed_design_newdata(flags, pd.DataFrame({"flag": ["yes"]}))


def test_newdata_missing_values_give_nan_rows(small):
    fd = fixed_design("x + f", small)
    X = fixed_design_newdata(fd, pd.DataFrame({"x": [1.0, np.nan], "f": pd.array(["b", None], dtype="string")}))
    np.testing.assert_array_equal(X[0], [1, 1, 1, 0])
    assert np.isnan(X[1, 1:]).all()


def test_stateful_term_newdata_of_another_type_is_named(five):
    fd = fixed_design("scale(x) + poly(n, 2)", five)
    with pytest.raises(DataError, match=r"'x' in 'scale\(x\)' was numeric when fitting but newdata has strings; "
                                        r"convert it with pd.to_numeric\(newdata\['x'\]\)"):
        fixed_design_newdata(fd, pd.DataFrame({"x": ["1"], "n": [1]}))
    X = fixed_design_newdata(fd, pd.DataFrame({"x": [np.nan, 4.0], "n": pd.array([None, 4], dtype="Int64")}))
    assert np.isnan(X[0, 1:]).all()  # missing values propagate, as R's predict does
    np.testing.assert_array_equal(X[1], fd.X[2])


def test_ordered_factor_takes_rs_polynomial_contrasts():
    """An ordered pandas Categorical is coded as R codes an ordered factor: contr.poly, columns
    named .L, .Q, .C, ^4, ... (values from R 4's contr.poly(4) and contr.poly(6)[, 4:5]). The fit
    spans the same space as treatment coding: same logLik and fitted values."""
    from glmmbayes.formula.fixed import contr_poly

    np.testing.assert_allclose(contr_poly(4), [[-0.670820393249937, 0.5, -0.223606797749979],
                                               [-0.223606797749979, -0.5, 0.670820393249937],
                                               [0.223606797749979, -0.5, -0.670820393249937],
                                               [0.670820393249937, 0.5, 0.223606797749979]], atol=1e-14)
    np.testing.assert_allclose(contr_poly(6)[:, 3:5], [[0.188982236504614, -0.0629940788348711],
                                                       [-0.566946709513841, 0.3149703941743555],
                                                       [0.377964473009228, -0.6299407883487117],
                                                       [0.377964473009227, 0.6299407883487125],
                                                       [-0.566946709513841, -0.3149703941743564],
                                                       [0.188982236504614, 0.0629940788348713]], atol=1e-14)
    rng = np.random.default_rng(8)
    n = 120
    temp = rng.choice(["low", "mid", "high", "top"], n)
    d = pd.DataFrame({"g": rng.integers(0, 12, n).astype(str), "r": rng.choice(["A", "B"], n),
                      "y": rng.normal(size=n) + (temp == "top")})
    levels = ["low", "mid", "high", "top"]
    ordered = d.assign(t=pd.Categorical(temp, categories=levels, ordered=True))
    plain = d.assign(t=pd.Categorical(temp, categories=levels))
    fo = gb.fit("y ~ r * t + (1 | g)", ordered, REML=False)
    fp = gb.fit("y ~ r * t + (1 | g)", plain, REML=False)
    assert list(fo.fixef.index) == ["(Intercept)", "rB", "t.L", "t.Q", "t.C", "rB:t.L", "rB:t.Q", "rB:t.C"]
    assert fo.loglik == pytest.approx(fp.loglik, abs=1e-9)
    np.testing.assert_allclose(fo.fitted, fp.fitted, atol=1e-8)
    new = ordered.head(7)
    np.testing.assert_allclose(fo.predict(new), fp.predict(plain.head(7)), atol=1e-8)
