"""Bound-constrained minimization of a smooth deviance with finite-difference derivatives.

The objectives are smooth once PIRLS converges tightly, so central differences give gradients
good to ~1e-7 and a quasi-Newton method converges quickly -- provided the problem is well
scaled. Fixed effects are therefore optimized in whitened coordinates z (β = β0 + Lz, with L
the Cholesky factor of an approximate covariance), the route to lme4-level accuracy without
lme4's parameter-scaling warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True)
class OptResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray  # gradient at x (original coordinates)
    hessian: np.ndarray | None  # Hessian at x (original coordinates), if computed
    nfev: int
    nit: int
    success: bool
    message: str
    trace: tuple = field(default=())  # (evaluation, deviance) pairs at each iteration
    inv_hessian_diag: np.ndarray | None = None  # the quasi-Newton estimate (original coordinates)
    rows: int | None = None  # the rows of a subsample the deviance was evaluated on (None: all)


class _Counted:
    def __init__(self, f):
        self.f = f
        self.nfev = 0

    def __call__(self, x):
        self.nfev += 1
        v = self.f(x)
        return v if np.isfinite(v) else np.inf


def fd_gradient(f, x, fx, lower, h=1e-5):
    g = np.empty_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        if x[i] - lower[i] < h:  # one-sided near the boundary (θ_ii = 0)
            f1, f2 = f(x + e), f(x + 2 * e)
            g[i] = (-3 * fx + 4 * f1 - f2) / (2 * h)
        else:
            g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def fd_hessian(f, x, fx, lower, h=1e-3):
    """Central-difference Hessian (lme4's deriv12 scheme; the step is in whitened units, where 1e-3 balances truncation against PIRLS round-off)."""
    d = len(x)
    H = np.empty((d, d))
    shift = np.where(x - lower < h, h, 0.0)  # evaluate just inside the feasible region
    x = x + shift
    if np.any(shift):
        fx = f(x)
    fp = np.empty(d)
    fm = np.empty(d)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        fp[i], fm[i] = f(x + e), f(x - e)
        H[i, i] = (fp[i] - 2 * fx + fm[i]) / h**2
    for i in range(d):
        for j in range(i):
            ei = np.zeros(d)
            ej = np.zeros(d)
            ei[i] = h
            ej[j] = h
            v = (f(x + ei + ej) - fp[i] - fp[j] + 2 * fx - fm[i] - fm[j] + f(x - ei - ej)) / (2 * h * h)
            H[i, j] = H[j, i] = v
    return H


def _fd_partial(fz, z, fx, zl, g, h=1e-5):
    """Fill the NaN entries of g by finite differences (the coordinates without an analytic gradient)."""
    g = np.array(g, dtype=float)
    for i in np.flatnonzero(~np.isfinite(g)):
        e = np.zeros_like(z)
        e[i] = h
        if z[i] - zl[i] < h:
            g[i] = (-3 * fx + 4 * fz(z + e) - fz(z + 2 * e)) / (2 * h)
        else:
            g[i] = (fz(z + e) - fz(z - e)) / (2 * h)
    return g


def minimize_deviance(
    f,
    x0: np.ndarray,
    lower: np.ndarray,
    scale: np.ndarray | None = None,
    *,
    hessian: bool = False,
    maxiter: int = 1000,
    value_and_grad=None,
    ftol: float = 1e-14,
    gtol: float = 1e-8,
    fscale: float | None = None,
    restart_at_bound: bool = False,
) -> OptResult:
    """Minimize f(x) subject to x >= lower; `scale` is a lower-triangular matrix mapping z to x - x0.

    Coordinates with a finite lower bound must not be mixed by `scale` (they are the θ diagonals).
    `value_and_grad(x) -> (f, g)` may supply an analytic gradient; its NaN entries (and every
    entry when it is None) are differentiated numerically. Those coordinates must not be mixed
    by `scale` either. fscale: the deviance's natural size (1 + the number of rows). L-BFGS-B's
    ftol is relative to |f|; where |f| is far larger (a large constant: counts in the millions),
    ftol is scaled down so that the same absolute change in deviance stops it.
    restart_at_bound: where the result has a coordinate at its bound and no single-coordinate
    probe inward improves on it, run once more from a point inside and keep the lower result
    (a boundary point can be a local minimum along every coordinate while the optimum needs
    several to move together).
    """
    x0 = np.asarray(x0, float)
    lower = np.asarray(lower, float)
    d = len(x0)
    P = np.eye(d) if scale is None else np.asarray(scale, float)
    bounded = np.isfinite(lower)
    zl = np.where(bounded, (lower - x0) / np.diag(P), -np.inf)
    counted = _Counted(f)

    def to_x(z):
        return x0 + P @ z

    def fz(z):
        return counted(to_x(z))

    # the last two points evaluated: L-BFGS ends on a point it has evaluated, and the polish and
    # Hessian start there; a probe from a boundary point that is not taken leaves it one back
    last = {}

    best = {"f": np.inf, "z": None}  # the lowest deviance seen by the gradient path

    def grad_z(z, fx=None):
        key = np.asarray(z, float).tobytes()
        if key not in last:
            if len(last) == 2:
                del last[next(iter(last))]
            last[key] = _grad_z(z, fx)
            if last[key][0] < best["f"]:
                best["f"], best["z"] = last[key][0], np.array(z, float)
        fx_, g_ = last[key]
        return fx_, g_.copy()

    def _grad_z(z, fx=None):
        """(f, gradient in z) using the analytic part where there is one."""
        if value_and_grad is None:
            fx = fz(z) if fx is None else fx
            return fx, fd_gradient(fz, z, fx, zl)
        counted.nfev += 1
        fx, gx = value_and_grad(to_x(z))
        if not np.isfinite(fx):
            return np.inf, np.zeros(d)
        gx = np.full(d, np.nan) if gx is None else np.asarray(gx, float)
        known = np.isfinite(gx)
        gz = np.full(d, np.nan)
        gz[known] = (P.T[:, known] @ gx[known])[known]
        return fx, _fd_partial(fz, z, fx, zl, gz)

    trace = []
    # where a Hessian follows anyway, L-BFGS's slow last iterations are left to Newton steps
    # with that Hessian (each one evaluation, converging quadratically)
    finish = hessian and value_and_grad is not None
    stopped = {"early": False}

    def make_cb(halt: bool):
        gains = []

        def cb(intermediate_result):
            fk = float(intermediate_result.fun)
            if trace:
                gains.append(trace[-1][1] - fk)
            trace.append((counted.nfev, fk))
            if halt and len(gains) >= 2 and 0.0 <= gains[-1] < _FINISH_GAIN:
                stopped["early"] = True
                raise StopIteration

        return cb

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in zl]
    z0 = np.maximum(np.zeros(d), np.where(np.isfinite(zl), zl, -np.inf))
    opts = {"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": 20}
    if fscale is not None:
        f0 = grad_z(z0)[0]  # cached: L-BFGS-B's first evaluation at z0 reuses it
        if np.isfinite(f0) and abs(f0) > fscale:
            opts["ftol"] = ftol * fscale / abs(f0)
    res = minimize(grad_z, z0, jac=True, method="L-BFGS-B", bounds=bounds, callback=make_cb(finish), options=opts)
    z = res.x
    fx, g = grad_z(z)
    for _ in range(3):
        start = _inward_probe(fz, z, fx, zl, P)
        if start is None:
            break
        res = minimize(grad_z, start, jac=True, method="L-BFGS-B", bounds=bounds, callback=make_cb(finish),
                       options=opts)
        z = res.x
        fx, g = grad_z(z)
    at_bound = np.isfinite(zl) & (z - zl < 1e-6)
    if restart_at_bound and np.any(at_bound) and np.isfinite(fx):
        start = np.where(at_bound, zl + 0.2 / np.abs(np.diag(P)), z)
        fs, gs = grad_z(start)
        # restart from the probe where it lies lower or the deviance still falls further in
        # from it; from an uphill probe whose slope points back to the bound, L-BFGS-B only
        # walks back (a singular Oats LMM: 9 evaluations to the same point)
        moved = False
        if fs < fx or float(np.dot(gs, start - z)) < 0.0:
            trial = minimize(grad_z, start, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
            ft, gt = grad_z(trial.x)
            if ft < fx - 1e-7 * (1.0 + abs(fx)):
                res, z, fx, g, moved = trial, trial.x, ft, gt, True
        if not moved:
            fx, g = grad_z(z)  # the boundary point stays the answer
    regressed = best["z"] is not None and np.isfinite(fx) and fx > best["f"] + 1e-6 * (1.0 + abs(best["f"]))
    if regressed:
        # an objective that is not smooth (PIRLS failing to converge, so the value depends on
        # its warm start) can walk L-BFGS uphill; never return a finite deviance worse than
        # the best point seen (an infinite one is a failure the callers diagnose)
        z = best["z"]
        fx, g = grad_z(z)
    H = None
    success, message = bool(res.success) and not regressed, str(res.message)
    if hessian:
        Hz = _hessian_z(fz, grad_z, z, fx, zl, analytic=value_and_grad is not None)
        # after an early stop, the steps go as far as L-BFGS's own tolerance would have
        gain = min(_POLISH_MIN_GAIN, opts["ftol"] * max(abs(fx), 1.0)) if stopped["early"] else _POLISH_MIN_GAIN
        z, fx, g, done = _newton_finish(grad_z, z, fx, g, Hz, zl, gain)
        if stopped["early"]:
            if not done:  # Newton did not take over from where L-BFGS stopped: let it finish
                res = minimize(grad_z, z, jac=True, method="L-BFGS-B", bounds=bounds, callback=make_cb(False),
                               options=opts)
                z = res.x
                fx, g = grad_z(z)
                Hz = _hessian_z(fz, grad_z, z, fx, zl, analytic=True)
                z, fx, g, done = _newton_finish(grad_z, z, fx, g, Hz, zl, gain)
                success, message = bool(res.success) or done, str(res.message)
            else:
                success, message = not regressed, "converged: Newton steps with the Hessian after L-BFGS-B"
        Pinv = np.linalg.inv(P)
        H = Pinv.T @ Hz @ Pinv
    gx = np.linalg.solve(P.T, g)
    ihd = None
    try:  # the L-BFGS inverse Hessian, mapped back: a free scale estimate for a later stage
        Hinv = res.hess_inv.todense() if hasattr(res.hess_inv, "todense") else np.asarray(res.hess_inv)
        ihd = np.diag(P @ Hinv @ P.T).copy()
    except Exception:  # noqa: BLE001 - an estimate only
        ihd = None
    return OptResult(
        x=to_x(z),
        fun=float(fx),
        grad=gx,
        hessian=H,
        nfev=counted.nfev,
        nit=int(res.nit),
        success=success,
        message=message if not regressed else
        "the optimizer's last steps raised the deviance (an objective that is not smooth); the best point evaluated is returned",
        trace=tuple(trace),
        inv_hessian_diag=ihd,
    )


def _inward_probe(fz, z, fx, zl, P):
    """A start inside the feasible region that is lower than the bound point z, or None.

    A variance at its bound 0 is a stationary point of a deviance that is even in that θ
    (flipping the sign of a column of Λ changes nothing), so a gradient method can stop there
    although the optimum is inside. Probe inward, as a derivative-free method would."""
    best = None
    for i in np.flatnonzero(np.isfinite(zl) & (z - zl < 1e-6)):
        for delta in (0.05, 0.2, 0.5, 1.0):
            zp = z.copy()
            zp[i] = zl[i] + delta / abs(P[i, i])
            fp = fz(zp)
            if fp < fx - 1e-7 * (1 + abs(fx)) and (best is None or fp < best[0]):
                best = (fp, zp)
    return None if best is None else best[1]


_POLISH_MIN_GAIN = 1e-9  # deviance units: a Newton step predicted to gain less is not taken
_FINISH_GAIN = 1e-7  # an L-BFGS iteration gaining less hands over to the Newton steps
_NEWTON_STEPS = 4


def _newton_finish(grad_z, z, fx, g, Hz, zl, min_gain: float = _POLISH_MIN_GAIN):
    """Newton steps with one Hessian on the free coordinates until the next is predicted to gain
    less than min_gain (deviance units): (z, f, g, converged). They remove the optimizer slack that
    finite-difference gradients leave, and finish for L-BFGS where it was stopped early. Not
    converged: the Hessian is not positive definite there, a step did not lower the deviance,
    or the steps ran out."""
    for k in range(_NEWTON_STEPS + 1):
        free = ~(np.isfinite(zl) & (z - zl < 1e-8) & (g > 0))
        if not np.any(free):
            return z, fx, g, True
        try:
            R = np.linalg.cholesky(Hz[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return z, fx, g, False
        step = np.zeros(len(z))
        step[free] = -np.linalg.solve(R.T, np.linalg.solve(R, g[free]))
        if -0.5 * float(g[free] @ step[free]) < min_gain:
            return z, fx, g, True  # converged: the step would move by far less than an SE
        if k == _NEWTON_STEPS:
            break  # the steps ran out
        zn = np.maximum(z + step, np.where(np.isfinite(zl), zl, -np.inf))
        fn, gn = grad_z(zn)
        if not fn < fx:
            return z, fx, g, False
        z, fx, g = zn, fn, gn
    return z, fx, g, False


def _hessian_z(fz, grad_z, z, fx, zl, analytic: bool, h: float = 1e-3):
    """Hessian in whitened coordinates: differences of gradients when part of the gradient is
    analytic (fewer evaluations), else second differences of the deviance."""
    if not analytic:
        return fd_hessian(fz, z, fx, zl, h)
    d = len(z)
    zc = z + np.where(z - zl < h, h, 0.0)  # stay inside the feasible region
    g0 = grad_z(zc)[1]
    H = np.empty((d, d))
    for i in range(d):
        # forward differences of an analytic gradient: O(h) = 1e-3 relative in whitened units,
        # far inside what standard errors need, for half the evaluations of central ones
        e = np.zeros(d)
        e[i] = h
        H[:, i] = (grad_z(zc + e)[1] - g0) / h
    return 0.5 * (H + H.T)
