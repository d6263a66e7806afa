"""Lexical scanning of R formula text: parenthesis depth, top-level splits, R tokens.

Shared by the bar grammar (`bars`), the R expression translator (`rexpr`) and the fixed
design (`fixed`), which all need to see an R text at parenthesis depth 0 while treating
strings and backquoted names as opaque.
"""

from __future__ import annotations

import re

from glmmbayes.errors import FormulaError

__all__ = ["NAME_RE", "TOKEN_RE", "paren_depths", "split_top", "strip_span", "closing_paren", "find_top"]

#: an R syntactic name (no backquotes)
NAME_RE = re.compile(r"[A-Za-z.][A-Za-z0-9._]*")

#: one R token; the group name (ws, str, bt, num, name, op) is the token's kind
TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<bt>`[^`]*`)"""
    r"""|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?L?)|(?P<name>[A-Za-z.][A-Za-z0-9._]*)"""
    r"""|(?P<op>%[^%\s]*%|&&|\|\||==|!=|<=|>=|\*\*|[-+*/^()<>!&|,=:~%])"""
)


def paren_depths(text: str, formula: str, base: int) -> list[int]:
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


def split_top(text: str, seps: str, formula: str, base: int) -> list[tuple[str, int, int]]:
    """Split at depth-0 single-character separators: [(sep_before, start, end)], sep '' first."""
    d = paren_depths(text, formula, base)
    parts, start, sep = [], 0, ""
    for i, c in enumerate(text):
        if d[i] == 0 and c in seps:
            parts.append((sep, start, i))
            sep, start = c, i + 1
    parts.append((sep, start, len(text)))
    return parts


def strip_span(text: str, s: int, e: int) -> tuple[int, int]:
    """The span [s, e) of `text` without leading and trailing white space."""
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def closing_paren(text: str, open_pos: int) -> int:
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


def find_top(text: str, token: str, d: list[int]) -> int:
    """First position of `token` at depth 0 (depths `d` from paren_depths), -1 if none."""
    i = text.find(token)
    while i >= 0 and d[i] != 0:
        i = text.find(token, i + 1)
    return i
