"""`build_fit`: the one place where a method's `Estimate` becomes a `Fit` (lme4's `mkMerMod`).

The builder applies the checks every method shares -- the optimizer's gradient and Hessian,
a boundary fit, a non-finite likelihood, the sampler's diagnostics -- so that the same problem
gets the same words whichever method met it.
"""

from __future__ import annotations

import numpy as np

from .convergence import convergence_messages
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
    return Fit(design=design, estimate=estimate, converged=ok, messages=tuple(msgs),
               seconds=float(seconds), call=call)
