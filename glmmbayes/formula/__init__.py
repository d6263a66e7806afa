"""lme4-style formulas: parsing, R expression evaluation and fixed-effect design matrices.

One concern per module:

* `scan`   -- lexical scanning of R text (parenthesis depth, top-level splits, tokens);
* `bars`   -- the lme4 grammar: `parse_formula` splits ``response ~ fixed + (lhs | group)``
  (``||``, ``g1/g2`` and ``g1:g2`` expanded as lme4 does);
* `rexpr`  -- R expressions: translation to Python and the safe evaluator `evaluate`;
* `naming` -- R's names: `r_deparse` and ``model.matrix`` column names;
* `fixed`  -- fixed-effect / random-term model matrices with R's column names, and their
  re-encoding of new data.

The public names of those modules are re-exported here (``from glmmbayes import formula as
fm; fm.parse_formula(...)``).
"""

from __future__ import annotations

from .bars import ParsedFormula, RandomTerm, Response, parse_formula
from .fixed import FixedDesign, fixed_design, fixed_design_newdata, term_matrix, term_matrix_newdata
from .naming import r_deparse
from .rexpr import evaluate, r_to_python, referenced_columns

__all__ = [
    "RandomTerm",
    "Response",
    "ParsedFormula",
    "FixedDesign",
    "parse_formula",
    "r_to_python",
    "r_deparse",
    "evaluate",
    "referenced_columns",
    "fixed_design",
    "fixed_design_newdata",
    "term_matrix",
    "term_matrix_newdata",
]
