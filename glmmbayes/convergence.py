"""Convergence checks reported on the fit, in lme4's words where lme4 has words for them.

The checks read only an `OptimizerReport` (gradient and Hessian on the deviance scale at the
optimum), so every optimizing method gets the same ones, applied once by the Fit builder.
"""

from __future__ import annotations

import numpy as np

from .core.linalg import theta_diag_mask
from .estimate import OptimizerReport

GRAD_TOL = 0.002  # lme4's check.conv.grad default
SINGULAR_TOL = 1e-4  # lme4's isSingular default
HESSIAN_RTOL = 1e-10  # smallest eigenvalue of the diagonally scaled Hessian taken as positive


def theta_diagonal(design) -> np.ndarray:
    """Which entries of θ are diagonal elements of a Cholesky factor (lower bound 0)."""
    if design.spec.re_dist is not None:
        return np.zeros(0, bool)
    return np.concatenate([theta_diag_mask(t.k) for t in design.terms])


def is_singular(design, theta) -> bool:
    """lme4's isSingular: a diagonal element of θ at (or within 1e-4 of) its bound 0."""
    diag = theta_diagonal(design)
    return bool(np.any(np.asarray(theta)[diag] < SINGULAR_TOL)) if diag.size else False


def _scaled_eigenvalues(H: np.ndarray) -> np.ndarray:
    """Eigenvalues of D H D with D = diag(H)^(-1/2): invariant to rescaling a parameter, so a
    covariate multiplied by 1e8 does not look like a degenerate Hessian."""
    d = np.abs(np.diag(H))
    if not np.all(np.isfinite(H)) or np.any(d == 0):
        return np.array([np.nan])
    D = 1.0 / np.sqrt(d)
    try:
        return np.linalg.eigvalsh(D[:, None] * H * D[None, :])
    except np.linalg.LinAlgError:
        return np.array([np.nan])


def convergence_messages(design, theta, opt: OptimizerReport) -> tuple[list[str], bool]:
    """Messages and an overall converged flag from the final gradient and Hessian (lme4's
    checkConv: the gradient scaled by the Cholesky factor of the Hessian, the smaller of scaled
    and raw gradient compared with 0.002)."""
    msgs: list[str] = []
    ok = True
    if is_singular(design, theta):
        msgs.append("boundary (singular) fit: see help('isSingular')")
    n = opt.n_checked
    g = np.zeros(0) if opt.gradient is None else np.asarray(opt.gradient, float)[:n]
    free = np.ones(len(g), bool)
    diag = theta_diagonal(design)
    nth = min(len(diag), len(g))
    free[:nth] = ~(diag[:nth] & (np.asarray(theta)[:nth] < SINGULAR_TOL))  # gradient may be > 0 at a bound
    scaled = g[free]
    if opt.hessian is not None and scaled.size:
        Hf = np.asarray(opt.hessian, float)[:n, :n][np.ix_(free, free)]
        evals = _scaled_eigenvalues(Hf)
        if not np.all(np.isfinite(evals)) or evals.min() <= HESSIAN_RTOL:
            neg = int(np.sum(~(evals > HESSIAN_RTOL)))
            msgs.append(f"Model failed to converge: degenerate Hessian with {neg} negative eigenvalues")
            ok = False
        else:
            scaled = np.linalg.solve(np.linalg.cholesky(Hf), g[free])
            scaled = np.minimum(np.abs(scaled), np.abs(g[free]))
    if scaled.size and np.max(np.abs(scaled)) > GRAD_TOL:
        i = int(np.argmax(np.abs(scaled)))
        msgs.append(
            f"Model failed to converge with max|grad| = {np.max(np.abs(scaled)):.6g} "
            f"(tol = {GRAD_TOL}, component {i + 1})"
        )
        ok = False
    if opt.pirls_failures:
        msgs.append(f"PIRLS did not converge in {opt.pirls_failures} objective evaluations")
    if not opt.success and not ok:
        # a line search that stalls where the gradient and Hessian checks pass is at the
        # optimum (finite-difference noise); otherwise say what the optimizer said
        msgs.append(f"optimizer: {opt.message}")
    return msgs, ok
