"""R expressions in formulas: translation to Python and a safe evaluator over a DataFrame.

Responses (``size - incidence``), offsets (``log(n)``), weights and every variable of the
fixed part (``I(age^2)``, ``week > 2``) are R expressions.  `r_to_python` translates one to
Python source (``^`` -> ``**``, R's looser ``&``/``|`` parenthesised, dotted or backquoted
names mangled to identifiers); `evaluate` runs it with only whitelisted functions and the
data's columns in scope, so a formula can never reach Python attributes or builtins.
"""

from __future__ import annotations

import ast
import copy
import keyword
from functools import lru_cache

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError, FormulaError

from .scan import TOKEN_RE

__all__ = [
    "mangle", "demangle", "r_tokens", "r_to_python", "TERM_ONLY_FUNCS", "NotNumericError", "as_factor",
    "as_number", "column_values", "evaluate", "referenced_columns",
]

_MANGLE = "_R_"


def mangle(name: str) -> str:
    """R name -> valid Python identifier (dots, keywords, backticked names), reversible."""
    if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith(_MANGLE):
        return name
    return _MANGLE + name.encode().hex()


def demangle(name: str) -> str:
    """Inverse of `mangle`."""
    if name.startswith(_MANGLE):
        try:
            return bytes.fromhex(name[len(_MANGLE) :]).decode()
        except ValueError:
            return name
    return name


def r_tokens(expr: str) -> list[tuple[str, str]]:
    """The (kind, text) tokens of an R expression, white space dropped."""
    out, i = [], 0
    while i < len(expr):
        m = TOKEN_RE.match(expr, i)
        if m is None:
            raise FormulaError(f"cannot read R expression at {expr[i]!r}", expr, i)
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
        i = m.end()
    return out


def r_to_python(expr: str) -> str:
    """Translate an R expression to Python source (names mangled where not valid Python).

    ``Q('my col')`` (formulaic's quoting) is read as the backquoted name `` `my col` ``.
    """
    toks = []
    for kind, tok in _quoted_names(r_tokens(expr)):
        if kind == "num":
            tok = tok.rstrip("L")
        elif kind == "bt":
            tok = mangle(tok[1:-1])
        elif kind == "name":
            tok = {"TRUE": "True", "FALSE": "False"}.get(tok, mangle(tok))
        elif kind == "op":
            tok = {"^": "**", "%%": "%", "%/%": "//", "&&": "&", "||": "|"}.get(tok, tok)
        toks.append((kind, tok))
    return _logic_group(toks)


def _quoted_names(toks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Replace each ``Q("name")`` call by the backquoted name token `` `name` ``."""
    out, i = [], 0
    while i < len(toks):
        window = [t for _, t in toks[i : i + 4]]
        if len(window) == 4 and window[0] == "Q" and window[1] == "(" and window[3] == ")" \
                and toks[i + 2][0] == "str":
            out.append(("bt", f"`{ast.literal_eval(window[2])}`"))
            i += 4
        else:
            out.append(toks[i])
            i += 1
    return out


def _logic_group(toks: list[tuple[str, str]]) -> str:
    """Join tokens, parenthesising around & | ! because Python binds them tighter than
    comparisons while R binds them looser (R: `a > 1 & b` is `(a > 1) & b`)."""
    out, i = [], 0
    while i < len(toks):
        if toks[i][1] == "(":
            j, args = _paren_args(toks, i)
            out.append(("grp", "(" + ", ".join(_logic_group(a) for a in args) + ")"))
            i = j + 1
        else:
            out.append(toks[i])
            i += 1
    if not any(t in ("&", "|", "!") for _, t in out):
        return _join(out)
    return _logic_or(out)


def _paren_args(toks: list[tuple[str, str]], i: int) -> tuple[int, list[list[tuple[str, str]]]]:
    """For the '(' at toks[i]: index of its ')' and the comma-separated token lists inside."""
    depth, j = 0, i
    while j < len(toks):
        depth += toks[j][1] == "("
        depth -= toks[j][1] == ")"
        if depth == 0:
            break
        j += 1
    args, start, dep = [], i + 1, 0
    for k in range(i + 1, j):
        dep += toks[k][1] == "("
        dep -= toks[k][1] == ")"
        if dep == 0 and toks[k][1] == ",":
            args.append(toks[start:k])
            start = k + 1
    args.append(toks[start:j])
    return j, args


def _split_on(toks, op):
    parts, cur = [], []
    for t in toks:
        if t[1] == op:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


def _logic_or(toks) -> str:
    parts = _split_on(toks, "|")
    if len(parts) == 1:
        return _logic_and(toks)
    return " | ".join(f"({_logic_and(p)})" for p in parts)


def _logic_and(toks) -> str:
    parts = _split_on(toks, "&")
    if len(parts) == 1:
        return _logic_not(toks)
    return " & ".join(f"({_logic_not(p)})" for p in parts)


def _logic_not(toks) -> str:
    if toks and toks[0][1] == "!":
        return f"~({_logic_not(toks[1:])})"
    return _join(toks)


def _join(toks) -> str:
    s = " ".join(tok for _, tok in toks)
    return s.replace("( ", "(").replace(" )", ")").replace(" ,", ",")


# ----------------------------------------------------------------------------- evaluate

#: functions that only make sense as a whole formula term, because their result depends on
#: the fitted data (formulaic's stateful transforms; see `transforms`)
TERM_ONLY_FUNCS = frozenset({"scale", "center", "poly"})


class NotNumericError(TypeError):
    """Arithmetic or a numeric function met a factor or text; `what` describes the value."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def as_factor(x) -> pd.Categorical:
    """R's factor(): a Categorical with sorted levels (unused categories dropped)."""
    if isinstance(x, pd.Categorical):
        return x.remove_unused_categories()
    x = np.asarray(x)
    return pd.Categorical(x, categories=sorted(pd.unique(x[pd.notna(x)])))


def as_number(v):
    """`v` as float64 for arithmetic (R's logicals count 0/1); NotNumericError for a factor
    or text, so that ``size - incidence`` never wraps around in uint8 and ``s^2`` on a
    string column is an error instead of a string repetition."""
    if isinstance(v, pd.Categorical):
        raise NotNumericError("a factor")
    if isinstance(v, str):
        raise NotNumericError("text")
    if isinstance(v, (bool, int, float, np.number, np.bool_)):
        return float(v)
    a = np.asarray(v)
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    if a.dtype.kind == "O":
        items = a[pd.notna(a)]
        if all(isinstance(x, (bool, int, float, np.number, np.bool_)) for x in items):
            return np.array([np.nan if pd.isna(x) else float(x) for x in a], dtype=np.float64)
    raise NotNumericError("text" if a.dtype.kind in "OUS" else f"values of type {a.dtype}")


def _numeric(f):
    """`f` applied to its arguments made numbers by `as_number`."""
    return lambda *args: f(*map(as_number, args))


_FUNCS = {
    **{k: _numeric(f) for k, f in {
        "log": np.log, "log1p": np.log1p, "log2": np.log2, "log10": np.log10, "exp": np.exp,
        "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos,
        "tan": np.tan, "floor": np.floor, "ceiling": np.ceil, "pmin": np.minimum, "pmax": np.maximum,
    }.items()},
    "round": lambda x, digits=0: np.round(as_number(x), int(digits)),
    "I": lambda x: x,
    "as.numeric": lambda x: np.asarray(x, dtype=float),
    "as.integer": lambda x: np.trunc(np.asarray(x, dtype=float)),
    "factor": as_factor, "as.factor": as_factor, "C": as_factor,
}
_CONSTS = {"pi": np.pi, "Inf": np.inf, "NA": np.nan, "NaN": np.nan}
_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
    ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.keyword, ast.BoolOp, ast.boolop,
)
# operators as helper names: "_R_" + a word with non-hex letters is never a mangled name,
# and a user's own "_R_..." name is always mangled
_BINARY = {
    ast.Add: ("_R_plus", np.add), ast.Sub: ("_R_minus", np.subtract),
    ast.Mult: ("_R_times", np.multiply), ast.Div: ("_R_divide", np.true_divide),
    ast.Pow: ("_R_power", np.power), ast.Mod: ("_R_mod", np.mod),
    ast.FloorDiv: ("_R_intdiv", np.floor_divide),
    ast.BitAnd: ("_R_and", np.logical_and), ast.BitOr: ("_R_or", np.logical_or),
}
_UNARY = {ast.USub: ("_R_negate", np.negative), ast.UAdd: ("_R_unaryplus", np.positive),
          ast.Invert: ("_R_not", np.logical_not)}
_HELPERS = {
    **{name: _numeric(f) for name, f in _BINARY.values()},
    **{name: _numeric(f) for name, f in _UNARY.values()},
}


class _SafeOps(ast.NodeTransformer):
    """Route arithmetic and R's & | ! through `as_number` (numpy's own operators would
    wrap unsigned integers, treat bool + bool as OR, or concatenate strings)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        name = _BINARY[type(node.op)][0]
        return ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], [])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        name = _UNARY[type(node.op)][0]
        return ast.Call(ast.Name(name, ast.Load()), [node.operand], [])


def column_values(s: pd.Series):
    """A data column as the evaluator sees it, always a copy: a factor as a Categorical,
    logicals as bool (object with None where a nullable column is missing), every number
    type (unsigned, nullable Int64, ...) as float64 with NaN for missing, text as object."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return pd.Categorical(s).copy()
    if pd.api.types.is_bool_dtype(s.dtype):
        if s.isna().any():
            return s.to_numpy(dtype=object, na_value=None)
        return s.to_numpy(dtype=bool, copy=True)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":  # no missing marker but NaN
        return np.array(s.to_numpy(), dtype=np.float64)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    return s.to_numpy(dtype=object, copy=True)


def _parse_checked(expr: str) -> tuple[ast.Expression, set[str]]:
    """Parse `expr` (R) to a Python AST of allowed node types; also the called names."""
    py = r_to_python(expr)
    try:
        tree = ast.parse(py, mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"cannot parse expression {expr!r}: {e.msg}") from None
    called = set()
    for node in ast.walk(tree):
        op = getattr(node, "op", None)
        if not isinstance(node, _ALLOWED) or (op is not None and type(op) not in _BINARY and type(op) not in _UNARY
                                              and not isinstance(node, ast.BoolOp)):
            raise DataError(f"unsupported syntax {type(op or node).__name__} in expression {expr!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise DataError(f"unsupported function call in expression {expr!r}")
            called.add(node.func.id)
            if node.func.id == "C" and (len(node.args) != 1 or node.keywords):
                raise DataError(
                    f"C() with a contrasts argument is not supported (in '{expr}'); C(x) makes x a "
                    "factor with R's default treatment contrasts"
                )
    return tree, called


def _function(name: str, expr: str):
    """The implementation of R function `name`; DataError for unknown or term-only ones."""
    if name in TERM_ONLY_FUNCS:
        raise DataError(
            f"{name}() must be a term of the formula's right-hand side (e.g. y ~ {name}(x) + ...), "
            f"not part of the expression '{expr}'"
        )
    if name not in _FUNCS:
        supported = sorted(_FUNCS) + sorted(TERM_ONLY_FUNCS) + ["Q"]
        raise DataError(f"unknown function '{name}' in expression '{expr}'; supported: {', '.join(sorted(supported))}")
    return _FUNCS[name]


def _environment(tree: ast.Expression, called: set[str], expr: str, data: pd.DataFrame) -> dict:
    """The names `tree` may see: whitelisted functions, the data's columns, R constants."""
    env: dict = {}
    for name in _tree_names(tree):
        if name in env:
            continue
        r = demangle(name)
        if name in called:
            env[name] = _function(r, expr)
        elif r in data.columns:
            env[name] = column_values(data[r])
        elif r in _CONSTS:
            env[name] = _CONSTS[r]
        else:
            cols = [str(c) for c in data.columns]
            more = f", ... ({len(cols)} in all)" if len(cols) > 20 else ""
            raise DataError(
                f"unknown column '{r}' in expression '{expr}'; "
                f"available columns: {', '.join(cols[:20])}{more}"
            )
    env["__builtins__"] = {}
    return env


@lru_cache(maxsize=512)
def _tree_names(tree: ast.Expression) -> tuple[str, ...]:
    """The names a (cached, never edited) checked tree mentions, in walk order."""
    return tuple(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))


def _not_numeric_message(expr: str, env: dict, what: str) -> str:
    """Name the columns of `expr` that hold a factor or text (the cause of `what`)."""
    bad = []
    for key, v in env.items():
        if key in _HELPERS or callable(v) or key == "__builtins__":
            continue
        try:
            as_number(v)
        except NotNumericError as e:
            bad.append(f"column '{demangle(key)}' holds {e.what}")
    cause = "; ".join(bad) if bad else f"it computes with {what}"
    return (
        f"expression '{expr}' needs numbers but {cause}; convert the column to numbers "
        "(e.g. pd.to_numeric) or use it as a factor, without arithmetic"
    )


@lru_cache(maxsize=512)
def _compiled(expr: str):
    """(checked tree, called names, code of the safe-ops tree): a pure function of the text,
    cached because a design evaluates the same few expressions on every fit."""
    tree, called = _parse_checked(expr)
    safe = ast.fix_missing_locations(_SafeOps().visit(copy.deepcopy(tree)))
    return tree, frozenset(called), compile(safe, "<formula>", "eval")


def evaluate(expr: str, data: pd.DataFrame):
    """Evaluate an R expression on the columns of `data`; an array of length len(data).

    Numeric/bool results come back as numpy arrays (numbers as float64); factors as
    pandas.Categorical (level order kept); strings as object arrays.  Arithmetic on a
    factor or text column is a DataError naming the column and the expression.
    """
    tree, called, code = _compiled(expr)
    env = _environment(tree, called, expr, data)
    env.update(_HELPERS)
    try:
        with np.errstate(all="ignore"):
            value = eval(code, env)  # noqa: S307 - names checked above
    except NotNumericError as e:
        raise DataError(_not_numeric_message(expr, env, e.what)) from None
    except (TypeError, ValueError) as e:
        raise DataError(f"cannot evaluate expression '{expr}': {e}") from None
    if isinstance(value, pd.Categorical):
        return value
    if isinstance(value, pd.Series):
        value = value.to_numpy()
    value = np.asarray(value)
    if value.ndim == 0:
        value = np.full(len(data), value.item())
    if value.ndim != 1 or len(value) != len(data):
        raise DataError(f"expression '{expr}' gives shape {value.shape}, expected ({len(data)},)")
    return value


def referenced_columns(expr: str, data: pd.DataFrame) -> list[str]:
    """Names of the data columns an R expression refers to (unknown names are left out)."""
    return [r for r in _names(expr) if r in data.columns]


@lru_cache(maxsize=512)
def _names(expr: str) -> tuple[str, ...]:
    """The names (not called functions) an R expression mentions, in order, once each."""
    try:
        tree = ast.parse(r_to_python(expr), mode="eval")
    except (SyntaxError, FormulaError):
        return ()
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in called:
            r = demangle(node.id)
            if r not in out:
                out.append(r)
    return tuple(out)
