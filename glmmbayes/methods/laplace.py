"""method="laplace": maximum likelihood with the Laplace approximation (nAGQ = 1), or lme4's fast
nAGQ = 0 criterion. (The method table sends the gaussian/identity LMM to `methods.lmm`, and
nAGQ > 1 to `methods.agq`, as lme4's glmer does.)"""

from __future__ import annotations

import numpy as np

from ..core import objective as ob
from ..core.pirls import pirls
from ..design import Design
from ..estimate import Estimate
from .ml import fit_ml, ml_estimate
from .options import Option, integer


class LaplaceObjective:
    """The Laplace deviance, with its analytic θ/β-gradient where the link is canonical."""

    def __call__(self, prob, theta, beta, warm, phi):
        return ob.laplace(prob, theta, beta, warm, phi)

    def value_and_grad(self, prob, theta, beta, warm, phi):
        st = pirls(prob, theta, beta, warm.u, phi=phi)
        warm.update(st)
        if not np.isfinite(st.pdev):
            return np.inf, None, None
        return (ob.laplace_value(prob, st, phi), *ob.laplace_gradient(prob, st, phi))


def run(design: Design, *, nAGQ: int = 1) -> Estimate:
    """Laplace ML (nAGQ = 1) or the nAGQ = 0 criterion (θ by Laplace, β from PIRLS)."""
    res = fit_ml(design, LaplaceObjective(), fast_only=(nAGQ == 0))
    if nAGQ == 0:
        return ml_estimate(design, res, method="nagq0", nAGQ=0, likelihood="nagq0")
    return ml_estimate(design, res, method="laplace", nAGQ=1, likelihood="laplace")


OPTIONS = (
    Option("nAGQ", 1, integer(0), "0: lme4's fast criterion; 1: Laplace; > 1: adaptive quadrature"),
)
