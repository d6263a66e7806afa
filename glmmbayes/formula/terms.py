"""R's term structure of a formula: which terms, in which order, and how each is coded.

formulaic expands the operators (``*``, ``/``, ``^``, ``-``, ``:``) over placeholder names
that are numbered by the variables' first appearance in the formula.  The rest is R's
``terms.formula`` / ``model.matrix``, reproduced here so that coefficients are named and
parametrised as lme4 names them:

* inside a term the variables are in order of first appearance (``trt + lbase*trt`` has
  the term ``trt:lbase``), terms are ordered by degree, then by appearance;
* ``a %in% b`` is the term ``a:b`` (formulaic would read it as ``b + b:a``);
* a factor in a term is coded by contrasts when the term without it is contained in an
  earlier term (or is empty), else by one indicator per level (R's ``TermCode``); without
  an intercept, the first factor of the first term that has one gets indicators.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from glmmbayes.errors import FormulaError

__all__ = ["Term", "TermStructure", "term_structure"]


@dataclass(frozen=True)
class Term:
    """Variables of one term (indices, in order of first appearance) and, per variable,
    whether a factor is coded by contrasts (True) or by indicators (False)."""

    variables: tuple[int, ...]
    contrasts: tuple[bool, ...]


@dataclass(frozen=True)
class TermStructure:
    """The intercept and the ordered, coded terms of a formula's right-hand side."""

    intercept: bool
    terms: tuple[Term, ...]


def term_structure(ftext: str, placeholders: dict[str, int], is_factor: list[bool], rhs: str) -> TermStructure:
    """Expand `ftext` (formula text over the placeholder names of `placeholders`, which
    maps each to its variable's index) into R's terms; `is_factor` per variable; `rhs` is
    the formula as written, for error messages."""
    intercept, terms = _expand(ftext, tuple(sorted(placeholders.items())), rhs)
    coded = [Term(t, _term_codes(t, terms[:j], is_factor)) for j, t in enumerate(terms)]
    if not intercept:
        coded = _first_factor_full(coded, is_factor)
    return TermStructure(intercept, tuple(coded))


@lru_cache(maxsize=256)
def _expand(ftext: str, placeholder_items: tuple, rhs: str) -> tuple[bool, tuple[tuple[int, ...], ...]]:
    """formulaic's expansion; terms as sorted index tuples, ordered by degree (stable). Cached:
    parsing costs more than building a small design, and studies fit one formula many times."""
    from formulaic import Formula

    placeholders = dict(placeholder_items)

    try:
        parsed = Formula(ftext.replace("%in%", ":"))
    except Exception as e:  # formulaic's own syntax errors
        raise FormulaError(f"cannot build the fixed-effects design for '{rhs}': {e}") from None
    intercept, terms = False, []
    for term in parsed:
        exprs = [f.expr for f in term.factors]
        if exprs == ["1"]:
            intercept = True
            continue
        if not all(e in placeholders for e in exprs):
            raise FormulaError(f"cannot build the fixed-effects design for '{rhs}': unexpected term '{term}'")
        key = tuple(sorted({placeholders[e] for e in exprs}))
        if key not in terms:
            terms.append(key)
    return intercept, tuple(sorted(terms, key=len))


def _term_codes(term: tuple[int, ...], earlier: list[tuple[int, ...]], is_factor: list[bool]) -> tuple[bool, ...]:
    """R's TermCode for each variable of `term` (numeric variables: True, unused)."""
    out = []
    for v in term:
        rest = set(term) - {v}
        out.append(not is_factor[v] or not rest or any(rest <= set(t) for t in earlier))
    return tuple(out)


def _first_factor_full(terms: list[Term], is_factor: list[bool]) -> list[Term]:
    """No intercept: the first factor of the first term with a factor gets indicators."""
    for j, t in enumerate(terms):
        for k, v in enumerate(t.variables):
            if is_factor[v]:
                codes = list(t.contrasts)
                codes[k] = False
                return terms[:j] + [Term(t.variables, tuple(codes))] + terms[j + 1 :]
    return terms
