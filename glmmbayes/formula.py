"""lme4-style formulas: parsing, R expression evaluation and fixed-effect design matrices.

`parse_formula` splits ``response ~ fixed + (lhs | group)`` the way lme4 does (``||`` and
``g1/g2`` expanded).  `fixed_design` / `term_matrix` build model matrices with formulaic and
rename the columns to the names R's ``model.matrix`` gives, so coefficient tables line up
with lme4 output.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError, FormulaError

__all__ = [
    "RandomTerm",
    "Response",
    "ParsedFormula",
    "FixedDesign",
    "parse_formula",
    "r_to_python",
    "r_deparse",
    "evaluate",
    "fixed_design",
    "fixed_design_newdata",
    "term_matrix",
    "term_matrix_newdata",
]


# ----------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class RandomTerm:
    lhs: str
    group: tuple[str, ...]

    @property
    def group_name(self) -> str:
        return ":".join(self.group)

    def __str__(self) -> str:
        return f"({self.lhs} | {self.group_name})"


@dataclass(frozen=True)
class Response:
    kind: str  # "single" or "cbind"
    exprs: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: Response
    fixed: str
    offsets: tuple[str, ...]
    random: tuple[RandomTerm, ...]


# ----------------------------------------------------------------------------- scanning

_NAME_RE = re.compile(r"[A-Za-z.][A-Za-z0-9._]*")


def _depths(text: str, formula: str, base: int) -> list[int]:
    """Paren depth of each character (strings/backticks are opaque); raises on imbalance.

    `base` is the offset of `text` inside `formula`, so errors point into the original.
    """
    depth, stack, out, i = 0, [], [], 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            j = text.find(c, i + 1)
            if j < 0:
                what = "backtick" if c == "`" else "string"
                raise FormulaError(f"unterminated {what}", formula, base + i)
            out.extend([depth] * (j - i + 1))
            i = j + 1
            continue
        if c == "(":
            stack.append(i)
            depth += 1
        elif c == ")":
            if not stack:
                raise FormulaError("unbalanced parentheses: ')' without '('", formula, base + i)
            stack.pop()
            depth -= 1
        elif c in "[]{}":
            raise FormulaError(f"unexpected character {c!r}", formula, base + i)
        out.append(depth if c != "(" else depth - 1)
        i += 1
    if stack:
        raise FormulaError("unbalanced parentheses: '(' is never closed", formula, base + stack[-1])
    return out


def _split_top(text: str, seps: str, formula: str, base: int) -> list[tuple[str, int, int]]:
    """Split at depth-0 single-character separators: [(sep_before, start, end)], sep '' first."""
    d = _depths(text, formula, base)
    parts, start, sep = [], 0, ""
    for i, c in enumerate(text):
        if d[i] == 0 and c in seps:
            parts.append((sep, start, i))
            sep, start = c, i + 1
    parts.append((sep, start, len(text)))
    return parts


def _strip_span(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _closing(text: str, open_pos: int) -> int:
    """Index of the ')' matching text[open_pos] == '(' (text already known balanced)."""
    depth, i = 0, open_pos
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = text.find(c, i + 1) + 1
            continue
        depth += c == "("
        depth -= c == ")"
        if depth == 0:
            return i
        i += 1
    return -1


def _find_top(text: str, token: str, d: list[int]) -> int:
    i = text.find(token)
    while i >= 0 and d[i] != 0:
        i = text.find(token, i + 1)
    return i


# ----------------------------------------------------------------------------- parse_formula


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula; FormulaError (with the character position) on bad syntax."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    d = _depths(text, text, 0)
    tildes = [i for i, c in enumerate(text) if c == "~" and d[i] == 0]
    if not tildes:
        raise FormulaError("formula has no '~' (expected 'response ~ terms')", text, len(text))
    if len(tildes) > 1:
        raise FormulaError("formula has more than one '~'", text, tildes[1])
    t = tildes[0]
    if not text[:t].strip():
        raise FormulaError("formula has no response on the left of '~'", text, t)
    if not text[t + 1 :].strip():
        raise FormulaError("formula has no terms on the right of '~'", text, t)
    response = _parse_response(text, 0, t)
    fixed, offsets, random = _parse_rhs(text, t + 1)
    return ParsedFormula(text, response, fixed, tuple(offsets), tuple(random))


def _parse_response(text: str, s: int, e: int) -> Response:
    s, e = _strip_span(text, s, e)
    lhs = text[s:e]
    _check_expr_tail(text, s, e)
    m = re.match(r"cbind\s*\(", lhs)
    if m and _closing(lhs, m.end() - 1) == len(lhs) - 1:
        inner0 = s + m.end()
        args = []
        for _, a, b in _split_top(text[inner0 : e - 1], ",", text, inner0):
            a, b = _strip_span(text, inner0 + a, inner0 + b)
            if a == b:
                raise FormulaError("empty argument in cbind()", text, a)
            args.append(text[a:b])
        if len(args) != 2:
            raise FormulaError(
                f"cbind() response needs exactly 2 columns (successes, failures), got {len(args)}",
                text, s,
            )
        return Response("cbind", tuple(args))
    return Response("single", (lhs,))


def _check_expr_tail(text: str, s: int, e: int) -> None:
    """Reject junk between operands at depth 0, e.g. `y ~ x z`, `y ~ x $`."""
    prev = None  # None, "op", "name", "operand"
    i = s
    while i < e:
        m = _TOKEN_RE.match(text, i)
        if m is None or m.end() > e:
            raise FormulaError(f"unexpected character {text[i]!r}", text, i)
        kind, tok = m.lastgroup, m.group()
        if kind == "ws":
            i = m.end()
            continue
        if tok == "(":
            if prev == "operand":
                raise FormulaError("unexpected '(' (missing operator?)", text, i)
            i = _closing(text, i) + 1
            prev = "operand"
            continue
        if kind == "op":
            prev = "op"
        else:
            if prev in ("name", "operand"):
                raise FormulaError("unexpected text (missing operator?)", text, i)
            prev = "name" if kind in ("name", "bt") else "operand"
        i = m.end()


def _parse_rhs(text: str, base: int) -> tuple[str, list[str], list[RandomTerm]]:
    rhs = text[base:]
    fixed_parts: list[tuple[str, str]] = []
    offsets: list[str] = []
    random: list[RandomTerm] = []
    terms = _split_top(rhs, "+-", text, base)
    d = _depths(rhs, text, base)
    for k, (sep, a, b) in enumerate(terms):
        a, b = _strip_span(rhs, a, b)
        if a == b:
            if k == 0 and len(terms) > 1:  # leading unary sign: `~ -1 + x`, `~ +x`
                continue
            # the offending character: the operator after the gap, or the dangling one
            pos = base + (terms[k + 1][1] - 1 if k + 1 < len(terms) else len(rhs.rstrip()) - 1)
            raise FormulaError("empty term in formula", text, pos)
        sign = sep or "+"
        term = rhs[a:b]
        bar = _bar_term(term, text, base + a)
        if bar is not None:
            if sign == "-":
                raise FormulaError("random-effects terms cannot be subtracted", text, base + a)
            random.extend(bar)
            continue
        bar_pos = next((i for i in range(a, b) if rhs[i] == "|" and d[i] == 0), None)
        if bar_pos is not None:
            raise FormulaError(
                "random-effects term must be in parentheses, e.g. '(1 | g)'", text, base + bar_pos
            )
        _check_expr_tail(text, base + a, base + b)
        m = re.match(r"offset\s*\(", term)
        if m and _closing(term, m.end() - 1) == len(term) - 1:
            inner = term[m.end() : -1].strip()
            if not inner:
                raise FormulaError("empty offset()", text, base + a)
            offsets.append(inner)
            continue
        fixed_parts.append((sign, term))
    if not fixed_parts:
        return "1", offsets, random
    fixed = ("-" if fixed_parts[0][0] == "-" else "") + fixed_parts[0][1]
    for sign, term in fixed_parts[1:]:
        fixed += f" {sign} {term}"
    return fixed, offsets, random


def _bar_term(term: str, text: str, pos: int) -> list[RandomTerm] | None:
    """Expand `( lhs | group )` / `( lhs || group )`; None if `term` is not a bar term."""
    if not (term.startswith("(") and _closing(term, 0) == len(term) - 1):
        return None
    inner0 = pos + 1
    inner = term[1:-1]
    d = _depths(inner, text, inner0)
    i = _find_top(inner, "|", d)
    if i < 0:
        s, e = _strip_span(inner, 0, len(inner))
        if inner[s:e].startswith("("):  # ((1 | g))
            return _bar_term(inner[s:e], text, inner0 + s)
        return None
    double = inner[i : i + 2] == "||"
    j = i + (2 if double else 1)
    extra = _find_top(inner[j:], "|", d[j:])
    if extra >= 0:
        raise FormulaError("more than one '|' in a random-effects term", text, inner0 + j + extra)
    ls, le = _strip_span(inner, 0, i)
    gs, ge = _strip_span(inner, j, len(inner))
    if ls == le:
        raise FormulaError("nothing on the left of '|'", text, inner0 + i)
    if gs == ge:
        raise FormulaError("no grouping factor on the right of '|'", text, inner0 + i)
    lhs_terms = []
    for k, (sep, a, b) in enumerate(_split_top(inner[:i], "+-", text, inner0)):
        a, b = _strip_span(inner, a, b)
        if a == b:
            if k == 0:
                continue
            raise FormulaError("empty term in random-effects term", text, inner0 + a - 1)
        _check_expr_tail(text, inner0 + a, inner0 + b)
        lhs_terms.append((sep or "+", inner[a:b]))
    groups = _parse_groups(inner[gs:ge], text, inner0 + gs)
    if double:
        intercept = not any(
            (s == "+" and t == "0") or (s == "-" and t == "1") for s, t in lhs_terms
        )
        slopes = [t for s, t in lhs_terms if s == "+" and t not in ("0", "1")]
        lhss = (["1"] if intercept else []) + [f"0 + {t}" for t in slopes]
    else:
        lhss = [_join_terms(lhs_terms)]
    return [RandomTerm(lhs, g) for lhs in lhss for g in groups]


def _join_terms(terms: list[tuple[str, str]]) -> str:
    out = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for s, t in terms[1:]:
        out += f" {s} {t}"
    return out


def _parse_groups(g: str, text: str, pos: int) -> list[tuple[str, ...]]:
    """`g1/g2` -> [(g1,), (g1, g2)]; `g1:g2` -> [(g1, g2)]."""
    out: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for _, a, b in _split_top(g, "/", text, pos):
        names = []
        for _, c, e in _split_top(g[a:b], ":", text, pos + a):
            c, e = _strip_span(g, a + c, a + e)
            name = g[c:e]
            if not (re.fullmatch(r"[A-Za-z.][A-Za-z0-9._]*", name) or re.fullmatch(r"`[^`]+`", name)):
                raise FormulaError(
                    "grouping factor must be a variable name (or g1:g2, g1/g2)", text, pos + c
                )
            names.append(name.strip("`"))
        prefix = prefix + tuple(names)
        out.append(prefix)
    return out


# ----------------------------------------------------------------------------- R <-> Python

_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<bt>`[^`]*`)"""
    r"""|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?L?)|(?P<name>[A-Za-z.][A-Za-z0-9._]*)"""
    r"""|(?P<op>%[^%\s]*%|&&|\|\||==|!=|<=|>=|\*\*|[-+*/^()<>!&|,=:~%])"""
)
_MANGLE = "_R_"


def _mangle(name: str) -> str:
    """R name -> valid Python identifier (dots, keywords, backticked names), reversible."""
    if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith(_MANGLE):
        return name
    return _MANGLE + name.encode().hex()


def _demangle(name: str) -> str:
    if name.startswith(_MANGLE):
        try:
            return bytes.fromhex(name[len(_MANGLE) :]).decode()
        except ValueError:
            return name
    return name


def _r_tokens(expr: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(expr):
        m = _TOKEN_RE.match(expr, i)
        if m is None:
            raise FormulaError(f"cannot read R expression at {expr[i]!r}", expr, i)
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
        i = m.end()
    return out


def r_to_python(expr: str) -> str:
    """Translate an R expression to Python source (names mangled where not valid Python)."""
    toks = []
    for kind, tok in _r_tokens(expr):
        if kind == "num":
            tok = tok.rstrip("L")
        elif kind == "bt":
            tok = _mangle(tok[1:-1])
        elif kind == "name":
            tok = {"TRUE": "True", "FALSE": "False"}.get(tok, _mangle(tok))
        elif kind == "op":
            tok = {"^": "**", "%%": "%", "%/%": "//", "&&": "&", "||": "|"}.get(tok, tok)
        toks.append((kind, tok))
    return _logic_group(toks)


def _logic_group(toks: list[tuple[str, str]]) -> str:
    """Join tokens, parenthesising around & | ! because Python binds them tighter than
    comparisons while R binds them looser (R: `a > 1 & b` is `(a > 1) & b`)."""
    # split into comma-separated arguments / parenthesised groups recursively
    out, i = [], 0
    while i < len(toks):
        kind, tok = toks[i]
        if tok == "(":
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
            out.append(("grp", "(" + ", ".join(_logic_group(a) for a in args) + ")"))
            i = j + 1
        else:
            out.append((kind, tok))
            i += 1
    if not any(t in ("&", "|", "!") for _, t in out):
        return _join(out)
    return _logic_or(out)


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


# R precedence, high binds tighter (see ?Syntax)
_BIN = {
    ast.Pow: ("^", 14, "right", ""),
    ast.Mod: ("%%", 11, "left", ""),
    ast.FloorDiv: ("%/%", 11, "left", ""),
    ast.Mult: ("*", 10, "left", " "),
    ast.Div: ("/", 10, "left", ""),
    ast.Add: ("+", 9, "left", " "),
    ast.Sub: ("-", 9, "left", " "),
    ast.BitAnd: ("&", 6, "left", " "),
    ast.BitOr: ("|", 5, "left", " "),
}
_CMP = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}
_R_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*|\.")


def r_deparse(py_expr: str) -> str:
    """Print a Python expression (as made by r_to_python) the way R's deparse() does."""
    return _dep(ast.parse(py_expr.strip(), mode="eval").body)[0]


def _r_name(name: str) -> str:
    name = _demangle(name)
    return name if _R_SYNTACTIC.fullmatch(name) else f"`{name}`"


def _dep(node: ast.AST) -> tuple[str, int]:
    """(text, precedence) of a node."""
    if isinstance(node, ast.Name):
        return _r_name(node.id), 99
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return ("TRUE" if v else "FALSE"), 99
        if v is None:
            return "NULL", 99
        if isinstance(v, float):
            return (str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)), 99
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"', 99
        return str(v), 99
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        op, prec, assoc, sp = _BIN[type(node.op)]
        left, lp = _dep(node.left)
        right, rp = _dep(node.right)
        if lp < prec or (lp == prec and assoc == "right"):
            left = f"({left})"
        if rp < prec or (rp == prec and assoc == "left"):
            right = f"({right})"
        return f"{left}{sp}{op}{sp}{right}", prec
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, (ast.Invert, ast.Not)):
            inner, ip = _dep(node.operand)
            return "!" + (inner if ip >= 7 else f"({inner})"), 7
        inner, ip = _dep(node.operand)
        sym = "-" if isinstance(node.op, ast.USub) else "+"
        return sym + (inner if ip >= 13 else f"({inner})"), 13
    if isinstance(node, ast.Compare):
        parts = []
        for sub in [node.left, *node.comparators]:
            t, p = _dep(sub)
            parts.append(t if p > 8 else f"({t})")
        out = parts[0]
        for op, t in zip(node.ops, parts[1:]):
            out += f" {_CMP.get(type(op), '?')} {t}"
        return out, 8
    if isinstance(node, ast.BoolOp):
        sym, prec = ("&&", 6) if isinstance(node.op, ast.And) else ("||", 5)
        return f" {sym} ".join(_dep(v)[0] for v in node.values), prec
    if isinstance(node, ast.Call):
        func = _dep(node.func)[0]
        args = [_dep(a)[0] for a in node.args]
        args += [f"{_r_name(k.arg)} = {_dep(k.value)[0]}" for k in node.keywords]
        return f"{func}({', '.join(args)})", 99
    raise FormulaError(f"unsupported expression: {ast.unparse(node)}")


# ----------------------------------------------------------------------------- evaluate


def _factor(x):
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
    "factor": _factor, "as.factor": _factor,
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


def evaluate(expr: str, data: pd.DataFrame):
    """Evaluate an R expression on the columns of `data`; an array of length len(data).

    Numeric/bool results come back as numpy arrays; factors as pandas.Categorical (level
    order kept); strings as object arrays.
    """
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
    env: dict = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or node.id in env:
            continue
        r = _demangle(node.id)
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


# ----------------------------------------------------------------------------- design matrices


@dataclass(frozen=True)
class _Var:
    temp: str                      # column name handed to formulaic
    expr: str                      # R text as written
    name: str                      # R's deparsed name (prefix of coefficient names)
    levels: tuple | None           # None for numeric; factor levels otherwise


@dataclass(frozen=True)
class FixedDesign:
    X: np.ndarray
    names: tuple[str, ...]
    model_spec: object
    rhs: str
    variables: tuple[_Var, ...]


_TEMP = "_gbv{:03d}"
_TEMP_RE = re.compile(r"_gbv\d{3}")


def _formula_atoms(rhs: str) -> list[tuple[int, int]]:
    """Spans of variables / calls in the formula-level rhs (not operators, 0/1, grouping parens)."""
    _depths(rhs, rhs, 0)  # validates parentheses / quotes
    spans, i = [], 0
    while i < len(rhs):
        c = rhs[i]
        if c == "`":
            j = rhs.index("`", i + 1) + 1
            spans.append((i, j))
            i = j
            continue
        m = _NAME_RE.match(rhs, i)
        if m and not (i > 0 and (rhs[i - 1].isalnum() or rhs[i - 1] in "._")):
            j = m.end()
            k = j
            while k < len(rhs) and rhs[k].isspace():
                k += 1
            if k < len(rhs) and rhs[k] == "(":
                j = _closing(rhs, k) + 1
            if rhs[i:j] != "%in%" and not (i > 0 and rhs[i - 1] == "%"):
                spans.append((i, j))
            i = j
            continue
        i += 1
    return spans


def _to_factor_or_numeric(v, var_name: str):
    if isinstance(v, pd.Categorical):
        v = v.remove_unused_categories()  # lme4's model.frame(drop.unused.levels = TRUE)
        return v, tuple(v.categories)
    v = np.asarray(v)
    if v.dtype == bool:
        return pd.Categorical(v, categories=[False, True]), (False, True)
    if np.issubdtype(v.dtype, np.number):
        return v.astype(float), None
    if v.dtype.kind in "OUS":
        cat = _factor(v)
        return cat, tuple(cat.categories)
    raise DataError(f"cannot use '{var_name}' of type {v.dtype} in a model formula")


def _level_text(level) -> str:
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def _rename(col: str, by_temp: dict[str, _Var]) -> str:
    if col == "Intercept":
        return "(Intercept)"
    out, i = [], 0
    while i < len(col):
        m = _TEMP_RE.match(col, i)
        if m is None or m.group() not in by_temp:
            raise RuntimeError(f"unexpected formulaic column name {col!r}")  # pragma: no cover
        var = by_temp[m.group()]
        i = m.end()
        part = var.name
        if i < len(col) and col[i] == "[":
            for lvl in var.levels or ():
                for pre in ("[T.", "["):
                    tag = f"{pre}{lvl}]"
                    if col.startswith(tag, i) and (i + len(tag) == len(col) or col[i + len(tag)] == ":"):
                        part += _level_text(lvl)
                        i += len(tag)
                        break
                else:
                    continue
                break
            else:
                raise RuntimeError(f"unexpected formulaic column name {col!r}")  # pragma: no cover
        out.append(part)
        i += col[i : i + 1] == ":"
    return ":".join(out)


def _frame(variables: tuple[_Var, ...], data: pd.DataFrame, fitted: bool) -> pd.DataFrame:
    cols = {}
    for var in variables:
        value, levels = _to_factor_or_numeric(evaluate(var.expr, data), var.name)
        if fitted:
            if (levels is None) != (var.levels is None):
                kind = "numeric" if var.levels is None else "a factor"
                raise DataError(f"'{var.name}' was {kind} when fitting but is not in newdata")
            if levels is not None:
                raw = np.asarray(value, dtype=object)
                present = pd.notna(raw)
                known = set(var.levels)
                unseen = [x for x in pd.unique(raw[present]) if x not in known]
                if unseen:
                    raise DataError(
                        f"'{var.name}' has level '{_level_text(unseen[0])}' in newdata that was not "
                        f"seen when fitting (levels: {', '.join(map(_level_text, var.levels))})"
                    )
                value = pd.Categorical(raw, categories=list(var.levels))
        cols[var.temp] = value
    return pd.DataFrame(cols, index=pd.RangeIndex(len(data)))


def fixed_design(rhs: str, data: pd.DataFrame) -> FixedDesign:
    """Model matrix of a formula right-hand side (no bars/offsets) with lme4 column names."""
    from formulaic import model_matrix

    spans = _formula_atoms(rhs)
    variables: list[_Var] = []
    by_name: dict[str, _Var] = {}
    pieces, last = [], 0
    for a, b in spans:
        expr = rhs[a:b]
        name = r_deparse(r_to_python(expr)) if not expr.startswith("`") else expr
        var = by_name.get(name)
        if var is None:
            value, levels = _to_factor_or_numeric(evaluate(expr, data), name)
            var = _Var(_TEMP.format(len(variables)), expr, name, levels)
            variables.append(var)
            by_name[name] = var
        pieces += [rhs[last:a], var.temp]
        last = b
    pieces.append(rhs[last:])
    ftext = "".join(pieces)
    # R orders the variables inside an interaction by first appearance in the formula;
    # temp names are numbered in that order, so sorting `a:b` chains reproduces it.
    ftext = re.sub(
        r"_gbv\d{3}(?:\s*:\s*_gbv\d{3})+",
        lambda m: ":".join(sorted(re.findall(r"_gbv\d{3}", m.group()))),
        ftext,
    )
    variables_t = tuple(variables)
    frame = _frame(variables_t, data, fitted=False)
    try:
        mm = model_matrix(ftext, frame, ensure_full_rank=True, na_action="ignore")
    except Exception as e:  # formulaic's own syntax errors
        raise FormulaError(f"cannot build the fixed-effects design for '{rhs}': {e}") from None
    by_temp = {v.temp: v for v in variables_t}
    names = tuple(_rename(c, by_temp) for c in mm.columns)
    X = np.ascontiguousarray(mm.to_numpy(dtype=float))
    return FixedDesign(X, names, mm.model_spec, rhs, variables_t)


def fixed_design_newdata(fd: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    """Encode `newdata` exactly as the fitted design (same columns, fit-time factor levels)."""
    frame = _frame(fd.variables, newdata, fitted=True)
    mm = fd.model_spec.get_model_matrix(frame, na_action="ignore")
    X = np.ascontiguousarray(np.asarray(mm, dtype=float))
    if X.shape[1] != len(fd.names):  # pragma: no cover - formulaic keeps the structure
        raise DataError(f"newdata gives {X.shape[1]} columns, expected {len(fd.names)}")
    return X


def term_matrix(lhs: str, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...], FixedDesign]:
    """Model matrix of a random-term left side ("1", "urban", "0 + x"), its names and a state
    for `term_matrix_newdata`."""
    fd = fixed_design(lhs, data)
    return fd.X, fd.names, fd


def term_matrix_newdata(state: FixedDesign, newdata: pd.DataFrame) -> np.ndarray:
    return fixed_design_newdata(state, newdata)


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
            r = _demangle(node.id)
            if r in data.columns and r not in out:
                out.append(r)
    return out
