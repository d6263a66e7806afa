"""R expressions in formulas: translation to Python and a safe evaluator over a DataFrame.

Responses (``size - incidence``), offsets (``log(n)``), weights and every variable of the
fixed part (``I(age^2)``, ``week > 2``) are R expressions.  `r_to_python` translates one to
Python source (``^`` -> ``**``, R's looser ``&``/``|`` parenthesised, dotted or backquoted
names mangled to identifiers); `evaluate` runs it with only whitelisted functions and the
data's columns in scope, so a formula can never reach Python attributes or builtins.
"""

from __future__ import annotations

import ast
import keyword

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError, FormulaError

from .scan import TOKEN_RE

__all__ = ["mangle", "demangle", "r_tokens", "r_to_python", "as_factor", "evaluate", "referenced_columns"]

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
    """Translate an R expression to Python source (names mangled where not valid Python)."""
    toks = []
    for kind, tok in r_tokens(expr):
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


def as_factor(x) -> pd.Categorical:
    """R's factor(): a Categorical with sorted levels (unused categories dropped)."""
    if isinstance(x, pd.Categorical):
        return x.remove_unused_categories()
    x = np.asarray(x)
    return pd.Categorical(x, categories=sorted(pd.unique(x[pd.notna(x)])))


_FUNCS = {
    "log": np.log, "log1p": np.log1p, "log2": np.log2, "log10": np.log10, "exp": np.exp,
    "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "floor": np.floor, "ceiling": np.ceil, "round": np.round,
    "pmin": np.minimum, "pmax": np.maximum, "I": lambda x: x,
    "as.numeric": lambda x: np.asarray(x, dtype=float),
    "as.integer": lambda x: np.trunc(np.asarray(x, dtype=float)),
    "factor": as_factor, "as.factor": as_factor,
}
_CONSTS = {"pi": np.pi, "Inf": np.inf, "NA": np.nan, "NaN": np.nan}
_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
    ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.keyword, ast.BoolOp, ast.boolop,
)


def _column(s: pd.Series):
    if isinstance(s.dtype, pd.CategoricalDtype):
        return pd.Categorical(s)
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy()
    return s.to_numpy(dtype=object)


def _parse_checked(expr: str) -> tuple[ast.Expression, set[str]]:
    """Parse `expr` (R) to a Python AST of allowed node types; also the called names."""
    py = r_to_python(expr)
    try:
        tree = ast.parse(py, mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"cannot parse expression {expr!r}: {e.msg}") from None
    called = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise DataError(f"unsupported syntax {type(node).__name__} in expression {expr!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise DataError(f"unsupported function call in expression {expr!r}")
            called.add(node.func.id)
    return tree, called


def _environment(tree: ast.Expression, called: set[str], expr: str, data: pd.DataFrame) -> dict:
    """The names `tree` may see: whitelisted functions, the data's columns, R constants."""
    env: dict = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or node.id in env:
            continue
        r = demangle(node.id)
        if node.id in called:
            if r not in _FUNCS:
                raise DataError(
                    f"unknown function '{r}' in expression '{expr}'; "
                    f"supported: {', '.join(sorted(_FUNCS))}"
                )
            env[node.id] = _FUNCS[r]
        elif r in data.columns:
            env[node.id] = _column(data[r])
        elif r in _CONSTS:
            env[node.id] = _CONSTS[r]
        else:
            cols = [str(c) for c in data.columns]
            more = f", ... ({len(cols)} in all)" if len(cols) > 20 else ""
            raise DataError(
                f"unknown column '{r}' in expression '{expr}'; "
                f"available columns: {', '.join(cols[:20])}{more}"
            )
    env["__builtins__"] = {}
    return env


def evaluate(expr: str, data: pd.DataFrame):
    """Evaluate an R expression on the columns of `data`; an array of length len(data).

    Numeric/bool results come back as numpy arrays; factors as pandas.Categorical (level
    order kept); strings as object arrays.
    """
    tree, called = _parse_checked(expr)
    env = _environment(tree, called, expr, data)
    with np.errstate(all="ignore"):
        value = eval(compile(tree, "<formula>", "eval"), env)  # noqa: S307 - names checked above
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
    try:
        tree = ast.parse(r_to_python(expr), mode="eval")
    except SyntaxError:
        return []
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in called:
            r = demangle(node.id)
            if r in data.columns and r not in out:
                out.append(r)
    return out
