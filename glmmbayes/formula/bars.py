"""The lme4 formula grammar: ``response ~ fixed + offset(o) + (lhs | group)``.

`parse_formula` splits a formula the way lme4 does before any data are seen: the response
(one expression or ``cbind(successes, failures)``), the fixed part as R formula text,
``offset()`` terms, and the random terms, with ``(x || g)`` expanded to uncorrelated terms,
``g1/g2`` to ``g1 + g2:g1`` (lme4's names) and ``g1:g2`` kept as one interaction grouping factor.  Errors
are FormulaErrors that point at the offending character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from glmmbayes.errors import FormulaError

from .scan import TOKEN_RE, closing_paren, find_top, paren_depths, split_top, strip_span

__all__ = ["RandomTerm", "Response", "ParsedFormula", "parse_formula", "check_expr_tail"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(lhs | g1:g2)``: R formula text of the left side, group names."""

    lhs: str
    group: tuple[str, ...]

    @property
    def group_name(self) -> str:
        return ":".join(self.group)

    def __str__(self) -> str:
        return f"({self.lhs} | {self.group_name})"


@dataclass(frozen=True)
class Response:
    """The left side: kind "single" (one R expression) or "cbind" (successes, failures)."""

    kind: str
    exprs: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part (R formula text), offsets and random terms."""

    text: str
    response: Response
    fixed: str
    offsets: tuple[str, ...]
    random: tuple[RandomTerm, ...]


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula; FormulaError (with the character position) on bad syntax."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    d = paren_depths(text, text, 0)
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
    """The left of '~': ``cbind(a, b)`` with exactly two arguments, or one expression."""
    s, e = strip_span(text, s, e)
    lhs = text[s:e]
    check_expr_tail(text, s, e)
    m = re.match(r"cbind\s*\(", lhs)
    if m and closing_paren(lhs, m.end() - 1) == len(lhs) - 1:
        inner0 = s + m.end()
        args = []
        for _, a, b in split_top(text[inner0 : e - 1], ",", text, inner0):
            a, b = strip_span(text, inner0 + a, inner0 + b)
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


def check_expr_tail(text: str, s: int, e: int) -> None:
    """Reject junk between operands at depth 0 of text[s:e], e.g. `y ~ x z`, `y ~ x $`."""
    prev = None  # None, "op", "name", "operand"
    i = s
    while i < e:
        m = TOKEN_RE.match(text, i)
        if m is None or m.end() > e:
            raise FormulaError(f"unexpected character {text[i]!r}", text, i)
        kind, tok = m.lastgroup, m.group()
        if kind == "ws":
            i = m.end()
            continue
        if tok == "(":
            if prev == "operand":
                raise FormulaError("unexpected '(' (missing operator?)", text, i)
            i = closing_paren(text, i) + 1
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
    """Split the right of '~' (starting at `base`) into fixed text, offsets and random terms."""
    rhs = text[base:]
    fixed_parts: list[tuple[str, str]] = []
    offsets: list[str] = []
    random: list[RandomTerm] = []
    terms = split_top(rhs, "+-", text, base)
    d = paren_depths(rhs, text, base)
    for k, (sep, a, b) in enumerate(terms):
        a, b = strip_span(rhs, a, b)
        if a == b:
            if k == 0 and len(terms) > 1:  # leading unary sign: `~ -1 + x`, `~ +x`
                continue
            # the offending character: the operator after the gap, or the dangling one
            pos = base + (terms[k + 1][1] - 1 if k + 1 < len(terms) else len(rhs.rstrip()) - 1)
            raise FormulaError("empty term in formula", text, pos)
        sign, term = sep or "+", rhs[a:b]
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
        check_expr_tail(text, base + a, base + b)
        inner = _offset_inner(term, text, base + a)
        if inner is not None:
            offsets.append(inner)
        else:
            fixed_parts.append((sign, term))
    return (_join_terms(fixed_parts) if fixed_parts else "1"), offsets, random


def _offset_inner(term: str, text: str, pos: int) -> str | None:
    """The argument of an ``offset(...)`` term, None if `term` is not one."""
    m = re.match(r"offset\s*\(", term)
    if not (m and closing_paren(term, m.end() - 1) == len(term) - 1):
        return None
    inner = term[m.end() : -1].strip()
    if not inner:
        raise FormulaError("empty offset()", text, pos)
    return inner


def _bar_term(term: str, text: str, pos: int) -> list[RandomTerm] | None:
    """Expand `( lhs | group )` / `( lhs || group )`; None if `term` is not a bar term."""
    if not (term.startswith("(") and closing_paren(term, 0) == len(term) - 1):
        return None
    inner0 = pos + 1
    inner = term[1:-1]
    d = paren_depths(inner, text, inner0)
    i = find_top(inner, "|", d)
    if i < 0:
        s, e = strip_span(inner, 0, len(inner))
        if inner[s:e].startswith("("):  # ((1 | g))
            return _bar_term(inner[s:e], text, inner0 + s)
        return None
    double = inner[i : i + 2] == "||"
    j = i + (2 if double else 1)
    extra = find_top(inner[j:], "|", d[j:])
    if extra >= 0:
        raise FormulaError("more than one '|' in a random-effects term", text, inner0 + j + extra)
    ls, le = strip_span(inner, 0, i)
    gs, ge = strip_span(inner, j, len(inner))
    if ls == le:
        raise FormulaError("nothing on the left of '|'", text, inner0 + i)
    if gs == ge:
        raise FormulaError("no grouping factor on the right of '|'", text, inner0 + i)
    lhs_terms = _bar_lhs_terms(inner[:i], text, inner0)
    groups = _parse_groups(inner[gs:ge], text, inner0 + gs)
    lhss = _uncorrelated(lhs_terms) if double else [_join_terms(lhs_terms)]
    return [RandomTerm(lhs, g) for lhs in lhss for g in groups]


def _bar_lhs_terms(lhs: str, text: str, base: int) -> list[tuple[str, str]]:
    """The signed terms of a bar's left side: [(sign, term text)]."""
    out = []
    for k, (sep, a, b) in enumerate(split_top(lhs, "+-", text, base)):
        a, b = strip_span(lhs, a, b)
        if a == b:
            if k == 0:
                continue
            raise FormulaError("empty term in random-effects term", text, base + a - 1)
        check_expr_tail(text, base + a, base + b)
        out.append((sep or "+", lhs[a:b]))
    return out


def _uncorrelated(lhs_terms: list[tuple[str, str]]) -> list[str]:
    """`(1 + x + z || g)` -> left sides "1", "0 + x", "0 + z" (lme4's expansion of ||)."""
    intercept = not any((s == "+" and t == "0") or (s == "-" and t == "1") for s, t in lhs_terms)
    slopes = [t for s, t in lhs_terms if s == "+" and t not in ("0", "1")]
    return (["1"] if intercept else []) + [f"0 + {t}" for t in slopes]


def _join_terms(terms: list[tuple[str, str]]) -> str:
    """[(sign, term)] back to formula text, a leading '-' kept."""
    out = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for s, t in terms[1:]:
        out += f" {s} {t}"
    return out


def _parse_groups(g: str, text: str, pos: int) -> list[tuple[str, ...]]:
    """`g1/g2` -> [(g1,), (g2, g1)]; `g1:g2` -> [(g1, g2)]. The nested factor is named inner:outer
    (`g2:g1`), as lme4's expandSlash writes it."""
    out: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for _, a, b in split_top(g, "/", text, pos):
        names = []
        for _, c, e in split_top(g[a:b], ":", text, pos + a):
            c, e = strip_span(g, a + c, a + e)
            name = g[c:e]
            if not (re.fullmatch(r"[A-Za-z.][A-Za-z0-9._]*", name) or re.fullmatch(r"`[^`]+`", name)):
                raise FormulaError(
                    "grouping factor must be a variable name (or g1:g2, g1/g2)", text, pos + c
                )
            names.append(name.strip("`"))
        prefix = tuple(names) + prefix
        out.append(prefix)
    return out
