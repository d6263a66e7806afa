"""The ζ function of lme4's profile.merMod: ζ(x) = sign(x - x̂) sqrt(D(x) - D̂), D(x) the deviance
minimized over every other parameter with one parameter held at x.

The parameters are lme4's (`.sig01`, ..., `.sigma`, fixed effects; see `params`). For a GLMM the
other parameters, fixed effects included, are re-optimized on the deviance the fit maximized
(Laplace or AGQ) with its analytic gradient, chained through the sd/cor -> θ map. For the linear
mixed model the fixed effects are profiled out in closed form (generalized least squares) while
a variance parameter is held, and a fixed effect is held by moving it into the offset and
re-optimizing θ, as lme4 does. A REML fit is profiled on the ML deviance (lme4's `refitML`).
Every evaluation is warm-started from the nearest solved point, shifted along the regression of
the other parameters on the held one (from the covariance at the optimum), and scaled by their
conditional standard deviations, so the quasi-Newton steps are well conditioned.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import brentq, minimize

from ..core import objective as ob
from ..core.optimize import minimize_deviance
from ..core.pirls import Problem
from ..errors import SpecError
from . import params

_BIG = 1e300  # a failed evaluation, as a value L-BFGS-B can step back from


def ml_fit(fit):
    """The fit itself, or its ML refit when it is a REML fit (profiles are on the ML deviance)."""
    if not fit.spec.reml:
        return fit
    if fit.call is None or fit.call.refit is None:
        raise SpecError("this REML fit cannot be refitted by ML for a profile (it has no refit call)")
    spec = dataclasses.replace(fit.spec, REML=False)
    return fit.call.refit(dataclasses.replace(fit.design, spec=spec))


def _jacobian(design, var: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """d θ / d (sd, cor[, σ]) by one-sided differences pointing into the feasible region."""
    th0, _ = params.to_theta(design, var)
    J = np.empty((len(th0), len(var)))
    for i in range(len(var)):
        h = 1e-7 * max(1.0, abs(var[i]))
        if var[i] + h > hi[i]:
            h = -h
        v = var.copy()
        v[i] += h
        J[:, i] = (params.to_theta(design, v)[0] - th0) / h
    return J


class _GlmmSpace:
    """Variables (sd, cor[, σ], β) on the deviance of a Laplace or AGQ fit."""

    def __init__(self, design, objective):
        self.design, self.obj = design, objective
        self.prob = design.problem()
        self.nv = len(params.name_map(design))
        lo, hi = params.bounds(design)
        self.lower = np.concatenate([lo, np.full(design.p, -np.inf)])
        self.upper = np.concatenate([hi, np.full(design.p, np.inf)])
        self.logphi = design.dispersion_estimated and getattr(objective, "supports_logphi", False)
        self.warm = ob.WarmStart(design.structure.q)
        self.sigma = params.has_sigma(design)

    def value(self, v):
        theta, phi = params.to_theta(self.design, v[: self.nv])
        d = self.obj(self.prob, theta, v[self.nv :], self.warm, phi)
        return d if np.isfinite(d) else np.inf

    def value_and_grad(self, v):
        nv, design = self.nv, self.design
        theta, phi = params.to_theta(design, v[:nv])
        beta = v[nv:]
        if not hasattr(self.obj, "value_and_grad"):
            return self.value(v), None
        if self.logphi:
            d, gt, gb, gl = self.obj.value_and_grad(self.prob, theta, beta, self.warm, phi, logphi=True)
        else:
            (d, gt, gb), gl = self.obj.value_and_grad(self.prob, theta, beta, self.warm, phi), None
        if not np.isfinite(d) or gt is None or gb is None or (self.sigma and gl is None):
            return (d if np.isfinite(d) else np.inf), None
        g = np.empty(len(v))
        g[:nv] = _jacobian(design, v[:nv], self.lower[:nv], self.upper[:nv]).T @ gt
        if self.sigma:
            g[nv - 1] += gl * 2.0 / v[nv - 1]  # d log φ / d σ with φ = σ²
        g[nv:] = gb
        return d, g

    def full(self, v):
        return np.asarray(v, float)


class _LmmSpace:
    """Variables (sd, cor, σ) of the linear mixed model; β at its GLS value given θ."""

    def __init__(self, design):
        self.design = design
        self.prob = design.problem()
        self.nv = len(params.name_map(design))
        self.lower, self.upper = params.bounds(design)
        self.lower = self.lower.copy()
        self.ldw = float(np.sum(np.log(design.wt)))
        self._beta = None

    def _solve(self, v):
        theta, s2 = params.to_theta(self.design, v)
        try:
            sol = ob.lmm(self.prob, theta, False)
        except np.linalg.LinAlgError:
            return None, theta, s2
        return sol, theta, s2

    def _dev(self, sol, s2):
        n = self.design.n
        return sol.factor.ldL2 - self.ldw + sol.pwrss / s2 + n * math.log(2.0 * math.pi * s2)

    def value(self, v):
        sol, _, s2 = self._solve(v)
        if sol is None or not s2 > 0:
            return np.inf
        return self._dev(sol, s2)

    def value_and_grad(self, v):
        sol, theta, s2 = self._solve(v)
        if sol is None or not s2 > 0:
            return np.inf, None
        self._beta = sol.beta
        gt = ob.lmm_gradient(self.prob, sol, False, sigma2=s2)
        g = _jacobian(self.design, v, self.lower, self.upper).T @ gt
        sigma = v[-1]
        g[-1] += -2.0 * sol.pwrss / sigma**3 + 2.0 * self.design.n / sigma
        return self._dev(sol, s2), g

    def full(self, v):
        sol, _, _ = self._solve(v)
        return np.concatenate([v, sol.beta])


class Profiler:
    """ζ of each parameter of a likelihood fit (see the module docstring)."""

    def __init__(self, fit):
        if fit.loglik is None or fit.estimate_kind != "ml":
            raise SpecError(f"a profile needs a maximum-likelihood fit; method={fit.method!r} "
                            "has no likelihood to profile (fit with method='laplace' or 'agq')")
        if fit.spec.re_dist is not None:
            raise SpecError("profiles of non-normal random-effect fits are not available")
        from ..methods import deviance_objective

        fit = ml_fit(fit)
        self.fit = fit
        design = self.design = fit.design
        self.map = params.name_map(design)
        self.names = list(self.map.index) + list(design.fixef_names)
        self.nv = len(self.map)
        var_hat = params.to_sdcor(design, fit.theta_hat, fit.phi)
        self.lmm = design.family.is_lmm and design.spec.re_dist is None
        if self.lmm:
            self.space = _LmmSpace(design)
            v_hat = var_hat
            self.space.lower[-1] = 1e-8 * var_hat[-1]  # σ > 0: the deviance is infinite at 0
        else:
            obj = deviance_objective(fit.call.method if fit.call else fit.method, design,
                                     dict(fit.call.options) if fit.call else {})
            self.space = _GlmmSpace(design, obj)
            v_hat = np.concatenate([var_hat, fit.beta_hat])
        self.messages: list[str] = []
        self.v_hat, self.dev_hat = self._polish(v_hat)
        self.psi_hat = self.space.full(self.v_hat)
        self.cov = self._covariance()
        se_beta = (np.sqrt(np.diag(fit.vcov_beta)) if self.lmm else
                   np.sqrt(np.maximum(np.diag(self.cov)[self.nv :], 0.0)))
        self.se = np.concatenate([np.sqrt(np.maximum(np.diag(self.cov)[: self.nv], 0.0)), se_beta])
        self.lower = np.concatenate([self.space.lower[: self.nv], np.full(design.p, -np.inf)])
        self.upper = np.concatenate([self.space.upper[: self.nv], np.full(design.p, np.inf)])
        self.points: dict[int, list] = {}  # j -> [(x, ζ, all parameters, warm start)]

    # ------------------------------------------------------------------ the optimum
    def _minimize(self, v0: np.ndarray, free: np.ndarray, scale: np.ndarray):
        space = self.space
        lo = (space.lower[free] - v0[free]) / scale
        hi = (space.upper[free] - v0[free]) / scale

        def fg(z):
            v = v0.copy()
            v[free] = v0[free] + scale * z
            d, g = space.value_and_grad(v)
            if not np.isfinite(d):
                return _BIG, np.zeros(len(z))
            if g is None:
                g = self._fd_grad(v, d, free)
            else:
                g = g[free]
            return d, g * scale

        z0 = np.clip(np.zeros(free.sum()), lo, hi)
        bnds = [(a if np.isfinite(a) else None, b if np.isfinite(b) else None) for a, b in zip(lo, hi)]
        res = minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bnds,
                       options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 500, "maxcor": 20})
        v = v0.copy()
        v[free] = v0[free] + scale * res.x
        return v, float(res.fun)

    def _fd_grad(self, v, d, free):
        g = np.empty(free.sum())
        for k, i in enumerate(np.flatnonzero(free)):
            h = 1e-6 * max(1.0, abs(v[i]))
            if v[i] + h > self.space.upper[i]:
                h = -h
            w = v.copy()
            w[i] += h
            g[k] = (self.space.value(w) - d) / h
        return g

    def _polish(self, v_hat):
        """The fit's estimate re-optimized on this deviance (the base of every ζ)."""
        d0 = self.space.value(v_hat)
        scale = np.maximum(np.abs(v_hat) * 0.05, 1e-2)
        v, d = self._minimize(v_hat.copy(), np.ones(len(v_hat), bool), scale)
        return (v, d) if d < d0 else (v_hat, d0)

    def _covariance(self) -> np.ndarray:
        """2 H⁻¹ at the optimum (H by differences of the gradient), or a diagonal fallback."""
        v, m = self.v_hat, len(self.v_hat)
        fallback = np.diag(np.maximum(np.abs(v) * 0.1, 0.05) ** 2)
        d0, g0 = self.space.value_and_grad(v)
        if g0 is None:
            return fallback
        H = np.empty((m, m))
        for i in range(m):
            h = 1e-4 * max(1.0, abs(v[i]))
            if v[i] + h > self.space.upper[i]:
                h = -h
            w = v.copy()
            w[i] += h
            gi = self.space.value_and_grad(w)[1]
            if gi is None:
                return fallback
            H[:, i] = (gi - g0) / h
        H = 0.5 * (H + H.T)
        try:
            C = 2.0 * np.linalg.inv(H)
        except np.linalg.LinAlgError:
            return fallback
        if not np.all(np.isfinite(C)) or np.any(np.diag(C) <= 0):
            return fallback
        return C

    # ------------------------------------------------------------------ ζ
    def zeta(self, j: int, x: float) -> float:
        """ζ of parameter j (index into `names`) at x; the solution is remembered."""
        pts = self.points.setdefault(j, [])
        for xp, zp, _, _ in pts:
            if xp == x:
                return zp
        if self.lmm and j >= self.nv:
            dev, full, warm = self._lmm_beta(j - self.nv, x, pts)
        else:
            dev, full, warm = self._var_point(j, x, pts)
        diff = dev - self.dev_hat
        if diff < -1e-6:
            self.messages.append(f"profiling {self.names[j]} found a lower deviance "
                                 f"(by {-diff:.3g}): the fit had not quite converged")
        z = math.copysign(math.sqrt(max(diff, 0.0)), x - self.psi_hat[j])
        pts.append((float(x), z, full, warm))
        return z

    def _var_point(self, j, x, pts):
        v_hat, C = self.v_hat, self.cov
        free = np.ones(len(v_hat), bool)
        free[j] = False
        slope = C[free, j] / C[j, j]
        cond = np.diag(C)[free] - C[free, j] ** 2 / C[j, j]
        scale = np.sqrt(np.maximum(cond, 1e-12 * (1 + np.abs(v_hat[free]) ** 2)))
        if pts:
            xp, _, _, base = min(pts, key=lambda p: abs(p[0] - x))
            base = base.copy()
        else:
            xp, base = v_hat[j], v_hat.copy()
        v0 = base.copy()
        v0[free] = np.clip(base[free] + slope * (x - xp), self.space.lower[free], self.space.upper[free])
        v0[j] = x
        v, d = self._minimize(v0, free, scale)
        return d, self.space.full(v), v

    def _lmm_beta(self, k, x, pts):
        """The LMM with β_k = x: X_k x moves into the offset, θ re-optimized (β, σ profiled)."""
        d = self.design
        prob = Problem(np.delete(d.X, k, axis=1), d.y, d.wt, d.offset + d.X[:, k] * x, d.family, d.structure)
        start = self.fit.theta_hat
        if pts:
            start = min(pts, key=lambda p: abs(p[0] - x))[3]

        def vg(theta):
            try:
                sol = ob.lmm(prob, theta, False)
            except np.linalg.LinAlgError:
                return np.inf, None
            return sol.deviance, ob.lmm_gradient(prob, sol, False)

        opt = minimize_deviance(lambda th: ob.lmm_deviance(prob, th, False), np.asarray(start, float),
                                d.structure.theta_lower, value_and_grad=vg, ftol=1e-15, gtol=1e-9)
        sol = ob.lmm(prob, opt.x, False)
        var = params.to_sdcor(d, opt.x, sol.sigma2)
        full = np.concatenate([var, np.insert(sol.beta, k, x)])
        return opt.fun, full, opt.x

    # ------------------------------------------------------------------ crossings
    def crossing(self, j: int, target: float) -> float:
        """The value where ζ_j = target (the bound when the profile stays short of it)."""
        s = 1.0 if target > 0 else -1.0
        x_hat = self.psi_hat[j]
        lo, hi = self.lower[j], self.upper[j]
        known = sorted((p[0], p[1]) for p in self.points.get(j, []) if s * (p[0] - x_hat) > 0)
        prev = (x_hat, 0.0)
        for x, z in (known if s > 0 else known[::-1]):
            if s * (z - target) >= 0:
                return self._root(j, target, prev[0], x)
            prev = (x, z)
        se = self.se[j] if self.se[j] > 0 else 0.1 * max(abs(x_hat), 1.0)
        x_prev, z_prev = prev
        step = abs(target - z_prev) * se
        x = x_prev + s * step
        for _ in range(40):
            x = min(max(x, lo), hi)
            z = self.zeta(j, x)
            if s * (z - target) >= 0:
                return self._root(j, target, x_prev, x)
            if x in (lo, hi):
                return x
            dx = x - x_prev
            slope = (z - z_prev) / dx if dx else 0.0
            if slope * s > 0 and s * slope > 1e-12:
                nxt = x + 1.1 * (target - z) / slope
            else:
                nxt = x + 2.0 * dx
            nxt = x + np.clip(nxt - x, -10 * abs(dx), 10 * abs(dx))
            x_prev, z_prev, x = x, z, nxt
        return float("nan")

    def _root(self, j, target, a, b):
        if a == b:
            return a
        tol = 1e-8 * max(1.0, abs(a), abs(b))
        return float(brentq(lambda t: self.zeta(j, t) - target, a, b, xtol=tol, rtol=1e-10))
