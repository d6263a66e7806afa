"""`build_fit`: the one place where a method's `Estimate` becomes a `Fit` (lme4's `mkMerMod`).

The builder applies the checks every method shares -- the optimizer's gradient and Hessian,
a boundary fit, a non-finite likelihood, the sampler's diagnostics -- so that the same problem
gets the same words whichever method met it.
"""

from __future__ import annotations

import numpy as np

from .convergence import convergence_messages
from .core.separation import separating_direction
from .design import Design
from .estimate import Estimate
from .fit import Fit, FitCall


def build_fit(design: Design, estimate: Estimate, seconds: float, call: FitCall | None = None) -> Fit:
    """The Fit of `estimate`, with its convergence verdict and messages."""
    msgs: list[str] = []
    ok = bool(estimate.method_converged)
    if estimate.optimizer is not None:
        checked, checks_ok = convergence_messages(design, estimate.theta, estimate.optimizer)
        msgs += checked
        ok = ok and checks_ok
    if estimate.sampler is not None:
        diag = estimate.sampler.diagnostics
        msgs += list(diag.messages)
        ok = ok and diag.passed
    if estimate.loglik is not None and not np.isfinite(estimate.loglik):
        msgs.append("the log-likelihood is not finite at the optimum")
        ok = False
    msgs += [m for m in estimate.messages if m not in msgs]
    sep = _separation_message(design, estimate)
    if sep:
        msgs.append(sep)
        ok = False
    return Fit(design=design, estimate=estimate, converged=ok, messages=tuple(msgs),
               seconds=float(seconds), call=call)


SEPARATION_SCREEN = 10.0  # |β| on the link scale beyond which the data are checked for separation


def _separation_message(design: Design, estimate: Estimate) -> str | None:
    """Binary and binomial fits with a runaway coefficient: is it separation? (lme4 says
    nothing here; the estimate it reports is where its optimizer stopped.)"""
    if not design.family.dist.binary_response or design.p == 0:
        return None
    big = np.abs(np.asarray(estimate.beta)) > SEPARATION_SCREEN
    if not big.any():
        return None
    d = separating_direction(design.X, design.y, design.wt)
    if d is None:
        return None
    names = [nm for nm, dj in zip(design.fixef_names, d) if dj != 0]
    shown = ", ".join(f"{nm} = {b:.4g}" for nm, b in zip(design.fixef_names, estimate.beta) if nm in names)
    return (f"quasi-complete separation: a combination of the fixed effects {', '.join(names)} is >= 0 "
            "wherever every trial succeeds and <= 0 wherever every trial fails, so the likelihood "
            f"keeps rising along it and the ML estimate is infinite ({shown} is only where the "
            "optimizer stopped). Remove or merge the separating term, or use a method with a proper "
            "prior (method='hmc')")
