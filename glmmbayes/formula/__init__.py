"""lme4-style formulas: parsing, R expression evaluation and fixed-effect design matrices.

One concern per module:

* `scan`   -- lexical scanning of R text (parenthesis depth, top-level splits, tokens);
* `bars`   -- the lme4 grammar: `parse_formula` splits ``response ~ fixed + (lhs | group)``
  (``||``, ``g1/g2`` and ``g1:g2`` expanded as lme4 does);
* `rexpr`  -- R expressions: translation to Python and the safe evaluator `evaluate`;
* `naming` -- R's names: `r_deparse`, factor level text and interaction column names;
* `transforms` -- stateful terms ``scale(x)``, ``center(x)``, ``poly(x, 2)`` (formulaic's
  arithmetic, the fitted state kept for new data);
* `variables` -- what each formula variable is on the fitted data (numeric, factor and its
  levels) and the same encoding enforced on new data;
* `terms`  -- R's terms: expansion (by formulaic), variable order, ordering and the
  contrasts-or-indicators rule of ``model.matrix``;
* `fixed`  -- fixed-effect / random-term model matrices with R's column names, and their
  re-encoding of new data.

The public names of those modules are re-exported here (``from glmmbayes import formula as
fm; fm.parse_formula(...)``).
"""

from __future__ import annotations

from .bars import ParsedFormula, RandomTerm, Response, parse_formula
from .fixed import (
    FixedDesign,
    fixed_design,
    fixed_design_newdata,
    formula_columns,
    term_matrix,
    term_matrix_newdata,
)
from .naming import level_text, r_deparse
from .rexpr import column_values, evaluate, r_to_python, referenced_columns
from .variables import describe_values, used_codes

__all__ = [
    "RandomTerm",
    "Response",
    "ParsedFormula",
    "FixedDesign",
    "parse_formula",
    "r_to_python",
    "r_deparse",
    "evaluate",
    "column_values",
    "describe_values",
    "used_codes",
    "level_text",
    "referenced_columns",
    "formula_columns",
    "fixed_design",
    "fixed_design_newdata",
    "term_matrix",
    "term_matrix_newdata",
]
