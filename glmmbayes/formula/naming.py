"""R's names: deparsed expressions and ``model.matrix`` column names.

Coefficient tables must line up with lme4 output, so a variable is named by R's
``deparse()`` of its expression (``I(age^2)``, ``week > 2``) and a factor column by the
variable name followed by the level (``livch3+``, ``flagTRUE``), interactions joined by ':'.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

import numpy as np

from glmmbayes.errors import FormulaError

from .rexpr import demangle

__all__ = ["r_deparse", "r_name", "level_text", "interaction_names"]

# R precedence, high binds tighter (see ?Syntax): (R operator, precedence, associativity, spacing)
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
_ATOM = 99  # precedence of names, constants and calls


@lru_cache(maxsize=1024)
def r_deparse(py_expr: str) -> str:
    """Print a Python expression (as made by r_to_python) the way R's deparse() does."""
    return _dep(ast.parse(py_expr.strip(), mode="eval").body)[0]


def r_name(name: str) -> str:
    """A (possibly mangled) name as R prints it: backquoted unless syntactic."""
    name = demangle(name)
    return name if _R_SYNTACTIC.fullmatch(name) else f"`{name}`"


def _dep(node: ast.AST) -> tuple[str, int]:
    """(R text, precedence) of an AST node."""
    if isinstance(node, ast.Name):
        return r_name(node.id), _ATOM
    if isinstance(node, ast.Constant):
        return _dep_constant(node.value), _ATOM
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        return _dep_binop(node)
    if isinstance(node, ast.UnaryOp):
        inner, ip = _dep(node.operand)
        if isinstance(node.op, (ast.Invert, ast.Not)):
            return "!" + (inner if ip >= 7 else f"({inner})"), 7
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
        args += [f"{r_name(k.arg)} = {_dep(k.value)[0]}" for k in node.keywords]
        return f"{func}({', '.join(args)})", _ATOM
    raise FormulaError(f"unsupported expression: {ast.unparse(node)}")


def _dep_constant(v) -> str:
    """R text of a literal: TRUE/FALSE, NULL, whole doubles without '.0', quoted strings."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def _dep_binop(node: ast.BinOp) -> tuple[str, int]:
    """R text of a binary operation, parenthesised by R's precedence and associativity."""
    op, prec, assoc, sp = _BIN[type(node.op)]
    left, lp = _dep(node.left)
    right, rp = _dep(node.right)
    if lp < prec or (lp == prec and assoc == "right"):
        left = f"({left})"
    if rp < prec or (rp == prec and assoc == "left"):
        right = f"({right})"
    return f"{left}{sp}{op}{sp}{right}", prec


def level_text(level) -> str:
    """A factor level as R prints it in a column name: logicals as TRUE/FALSE, whole
    doubles without '.0' (R's as.character(2) is "2"), other doubles to 15 digits."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    if isinstance(level, (float, np.floating)):
        if np.isfinite(level) and float(level).is_integer() and abs(level) < 1e15:
            return str(int(level))
        return format(float(level), ".15g")
    return str(level)


def interaction_names(parts: list[list[str]]) -> list[str]:
    """Column names of an interaction from each variable's column names, the first variable
    varying fastest as in R's model.matrix: [[a2, a3], [b2]] -> a2:b2, a3:b2."""
    out = [""]
    for k, names in enumerate(parts):
        out = [f"{prev}:{nm}" if k else nm for nm in names for prev in out]
    return out
