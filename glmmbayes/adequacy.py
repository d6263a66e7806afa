"""Is the Laplace approximation adequate for this fit? Per cluster, the Laplace and AGQ
log-integrals at the fit's parameters (seed 003, Fig. 2: t(z) is the integrand relative to its
Gaussian approximation). A diagnostic of a Fit: it reads the fit and calls the quadrature core.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .core.agq import agq_rule, check_integrable, group_log_integrals, log_det_blocks, log_integrand, signed_logsumexp
from .core.pirls import pirls
from .errors import SpecError
from .methods.options import choice, integer, optional

_LADDER = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 25, 31, 41, 51, 75, 101)  # odd: a knot at the mode, as lme4 users choose


def laplace_adequacy(fit, nAGQ: int = 25, *, tol: float = 0.01, grid: str | None = None) -> pd.DataFrame:
    """Per cluster: the Laplace and AGQ(nAGQ) log-integrals at the fit's (θ, β), and their difference.

    Columns: level, n_obs, mode (û_j, first coordinate), laplace, agq, difference (agq - laplace)
    and max_abs_log_t: max |log t(z)| over z = ±1, ±2 (conditional sd units, along each axis),
    t(z) being the integrand relative to its Laplace (Gaussian) approximation (seed 003 Fig. 2);
    0 for an exactly Gaussian integrand.

    The summary is in `df.attrs["summary"]`: loglik_laplace, loglik_agq, total_difference,
    worst_level, loglik_by_nAGQ (the AGQ log-likelihood at the same (θ, β) for increasing
    orders), recommended_nAGQ (the smallest order within `tol` of AGQ(nAGQ); 1 means Laplace
    is adequate) and an `advice` string (also `df.attrs["advice"]`).

    Works for any fit with one random-effect term (Laplace, AGQ, PQL, ...): the conditional
    modes are recomputed at the fit's (θ, β, φ).
    """
    nAGQ = integer(1)("nAGQ", nAGQ)
    grid = optional(choice("product", "sparse"))("grid", grid)
    design = fit.design
    if design.spec.re_dist is not None:
        raise SpecError("laplace_adequacy compares Laplace with AGQ for normal random effects; this "
                        "model's random effect is non-normal (its ML fit, method='agq', is exact)")
    if design.family.is_lmm:
        raise SpecError("the Laplace approximation is exact for a linear mixed model: nothing to check")
    check_integrable(design, "laplace_adequacy")
    rule = agq_rule(design, nAGQ, grid)
    prob = design.problem()
    s = design.structure
    u0 = fit.u if fit.u is not None and np.shape(fit.u) == (s.q,) else None
    st = pirls(prob, np.asarray(fit.theta_hat, float), np.asarray(fit.beta_hat, float), u0, phi=fit.phi)
    t = design.terms[0]
    d, m = t.k, t.nlevels
    ldet = log_det_blocks(st)
    g = log_integrand(prob, st, np.vstack([np.zeros((1, d)), rule.z]), fit.phi)
    g0 = g[:, 0]
    lap = g0 - ldet
    agq = signed_logsumexp(g[:, 1:], rule.w) - ldet
    # t(z) probes
    probes = np.concatenate([a * np.eye(d) for a in (-2.0, -1.0, 1.0, 2.0)])
    gp = log_integrand(prob, st, probes, fit.phi)
    max_log_t = np.max(np.abs(gp - g0[:, None]), axis=1)
    diff = agq - lap
    df = pd.DataFrame({
        "level": list(t.levels),
        "n_obs": np.bincount(t.codes, minlength=m),
        "mode": st.u[: s.q1].reshape(m, d)[:, 0],
        "laplace": lap,
        "agq": agq,
        "difference": diff,
        "max_abs_log_t": max_log_t,
    })
    ll_lap, ll_agq = float(np.sum(lap)), float(np.sum(agq))
    total = ll_agq - ll_lap
    by_k = {}
    for k in sorted(set(k for k in _LADDER if k < nAGQ) | {int(nAGQ)}):
        if k == nAGQ:
            by_k[k] = ll_agq
        elif k == 1:
            by_k[k] = ll_lap
        else:
            try:
                rk = agq_rule(design, k, grid)
            except SpecError:
                continue
            by_k[k] = float(np.sum(group_log_integrals(prob, st, rk, fit.phi)))
    rec = next(k for k in sorted(by_k) if abs(by_k[k] - ll_agq) < tol) if by_k else int(nAGQ)
    worst = int(np.argmax(np.abs(diff)))
    worst_txt = f"worst cluster {t.levels[worst]!s} ({diff[worst]:+.3g}, max|log t| = {max_log_t[worst]:.2g})"
    if abs(total) < tol:
        advice = (f"Laplace is adequate: AGQ({nAGQ}) changes the log-likelihood by {total:+.3g} at the "
                  f"fitted parameters (tolerance {tol}); {worst_txt}.")
    else:
        advice = (f"Laplace is not adequate here: AGQ({nAGQ}) changes the log-likelihood by {total:+.3g} "
                  f"at the fitted parameters (tolerance {tol}); {worst_txt}. Refit with method='agq', "
                  f"nAGQ={rec} (the smallest order whose log-likelihood is within {tol} of AGQ({nAGQ})).")
        if rec == nAGQ:
            advice += f" AGQ has not settled by nAGQ={nAGQ}: compare with a larger nAGQ."
    summary = {
        "nAGQ": int(nAGQ),
        "grid": rule.kind if d > 1 else "gauss-hermite",
        "loglik_laplace": ll_lap,
        "loglik_agq": ll_agq,
        "total_difference": total,
        "worst_level": t.levels[worst],
        "loglik_by_nAGQ": by_k,
        "recommended_nAGQ": int(rec),
        "tol": tol,
        "advice": advice,
    }
    df.attrs["summary"] = summary
    df.attrs["advice"] = advice
    return df
