"""Convergence checks reported on the fit, in lme4's words where lme4 has words for them."""

from __future__ import annotations

import numpy as np

from ..core.linalg import theta_diag_mask

GRAD_TOL = 0.002  # lme4's check.conv.grad default
SINGULAR_TOL = 1e-4  # lme4's isSingular default


def is_singular(design, theta) -> bool:
    diag = np.concatenate([theta_diag_mask(t.k) for t in design.terms])
    return bool(np.any(np.asarray(theta)[diag] < SINGULAR_TOL))


def convergence_messages(design, theta, opt, pirls_failures: int, n_main: int) -> tuple[list[str], bool]:
    """Messages and an overall converged flag from the final gradient and Hessian."""
    msgs: list[str] = []
    ok = True
    singular = is_singular(design, theta)
    if singular:
        msgs.append("boundary (singular) fit: see help('isSingular')")
    g = np.asarray(opt.grad)[:n_main]
    H = None if opt.hessian is None else np.asarray(opt.hessian)[:n_main, :n_main]
    nth = len(theta)
    diag = np.concatenate([theta_diag_mask(t.k) for t in design.terms])
    free = np.ones(len(g), bool)
    free[:nth] = ~(diag & (np.asarray(theta) < SINGULAR_TOL))  # gradient may be > 0 at a bound
    if H is not None:
        Hf = H[np.ix_(free, free)]
        try:
            evals = np.linalg.eigvalsh(Hf)
        except np.linalg.LinAlgError:
            evals = np.array([np.nan])
        if not np.all(np.isfinite(evals)) or evals.min() <= 0:
            neg = int(np.sum(evals <= 0))
            msgs.append(f"Model failed to converge: degenerate Hessian with {neg} negative eigenvalues")
            ok = False
            scaled = g[free]
        else:
            scaled = np.linalg.solve(np.linalg.cholesky(Hf), g[free])
            scaled = np.minimum(np.abs(scaled), np.abs(g[free]))
    else:
        scaled = g[free]
    if scaled.size and np.max(np.abs(scaled)) > GRAD_TOL:
        i = int(np.argmax(np.abs(scaled)))
        msgs.append(
            f"Model failed to converge with max|grad| = {np.max(np.abs(scaled)):.6g} "
            f"(tol = {GRAD_TOL}, component {i + 1})"
        )
        ok = False
    if pirls_failures:
        msgs.append(f"PIRLS did not converge in {pirls_failures} objective evaluations")
    if not opt.success and not ok:
        # a line search that stalls where the gradient and Hessian checks pass is at the
        # optimum (finite-difference noise); otherwise say what the optimizer said
        msgs.append(f"optimizer: {opt.message}")
    return msgs, ok
