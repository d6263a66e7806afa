"""Exceptions and warnings raised by glmmbayes.

Every error a user can trigger with bad input is one of these, and its message names the
culprit (column, row, term, or position in the formula).
"""

from __future__ import annotations


class GlmmError(Exception):
    """Base class of every glmmbayes error."""


class FormulaError(GlmmError, ValueError):
    """A formula that cannot be parsed; the message shows where."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.formula = formula
        self.position = position
        text = message
        if formula is not None and position is not None:
            text = f"{message}\n  {formula}\n  {' ' * position}^ (position {position})"
        elif formula is not None:
            text = f"{message}\n  in formula: {formula}"
        super().__init__(text)


class DataError(GlmmError, ValueError):
    """The data do not fit the model: unknown column, missing values, response outside support."""


class FamilyError(GlmmError, ValueError):
    """Unknown family or link, or a family/link combination that is not supported."""


class SpecError(GlmmError, ValueError):
    """An invalid option in a model specification."""


class FitError(GlmmError, RuntimeError):
    """A fit failed numerically (a factorization, a loop that did not converge); the message says
    where and what the user can do."""


class GlmmWarning(UserWarning):
    """Base class of glmmbayes warnings."""


class ConvergenceWarning(GlmmWarning):
    """The optimizer or sampler reports a problem; the fit's `messages` say which."""


class RankDeficiencyWarning(GlmmWarning):
    """Fixed-effect columns were dropped because X is rank deficient."""


class LaplaceAdequacyWarning(GlmmWarning):
    """The Laplace approximation is likely off for this model: adaptive quadrature at the Laplace
    estimate changes the log-likelihood noticeably (see `fit.laplace_adequacy()`)."""


class CostWarning(GlmmWarning):
    """A computation will take long (a large quadrature grid); the message gives the estimate
    and the cheaper alternatives."""
