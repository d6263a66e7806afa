"""GLMMs with one scalar non-normal random effect (`Spec(re_dist=RandomEffect(...))`).

Model: eta_i = offset_i + x_i' beta + z_i h(u_j),  u_j i.i.d. ~ D(params),  y_i | eta_i ~ family,
with D, h from `glmmbayes.re_dist.RandomEffect` and the conditional likelihood always
`family.loglik` (the shared family table).

- `fit_ml`: exact maximum likelihood. Each u_j is integrated out by a one-dimensional trapezoid rule
  in an unconstrained coordinate t (t = log u for positive u, t = u otherwise), centred at the
  per-group mode of the integrand, scaled by its curvature, with step 1/4 of that scale and each tail
  cut where the log integrand is 40 below its maximum. For these smooth, exponentially decaying
  integrands the trapezoid rule converges geometrically: the log-likelihood is exact to ~1e-10
  (checked against scipy.integrate.quad in the tests). The grid is held fixed while
  (beta, log params, log phi) are optimized (so the objective is smooth), then rebuilt at the
  optimum and the optimization repeated until beta moves less than 1e-9.
- `fit_joint`: joint maximization of log f(y, u | beta) over (beta, u) in either parameterization:
  ``"u"`` (the latent u as declared, e.g. McCulloch's Z u^½) or ``"w"`` (the random effect as it
  enters, w = h(u), with density f_u(h⁻¹(w)) |dh⁻¹/dw|, e.g. McCulloch's Z w). They differ by the
  log-Jacobian, so the joint modes, and the beta they give, differ — the point of seed 000. ML and
  posterior means do not depend on the parameterization.
- `to_pymc_nonnormal` / `sample_nonnormal`: the PyMC model (and a NUTS run) in either
  parameterization.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import optimize, sparse
from scipy.special import logsumexp
from .core.threads import single_threaded_blas

from .design import Design, build_design
from .errors import SpecError
from .re_dist import RandomEffect
from .spec import Spec

PARAMETERIZATIONS = ("u", "w")


# --------------------------------------------------------------------------- problem


@dataclass(frozen=True)
class Problem:
    """The arrays of a non-normal random-intercept model (one scalar term)."""

    design: Design
    re: RandomEffect
    X: np.ndarray
    y: np.ndarray
    wt: np.ndarray
    offset: np.ndarray
    z: np.ndarray  # (n,) the term's covariate (1 for a random intercept)
    codes: np.ndarray  # (n,) group index
    levels: tuple
    group: str
    phi: float | None  # known dispersion, None = estimated
    G: Any = field(repr=False)  # (q, n) sparse indicator: group sums

    @property
    def q(self) -> int:
        return len(self.levels)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def family(self):
        return self.design.family

    @property
    def fixef_names(self):
        return self.design.fixef_names


def _as_spec(spec, re_dist=None) -> Spec:
    if isinstance(spec, str):
        spec = Spec(spec, family="gaussian", re_dist=re_dist)
    if not isinstance(spec, Spec):
        raise SpecError(f"spec must be a glmmbayes.Spec, got {type(spec).__name__}")
    if re_dist is not None and spec.re_dist is None:
        from dataclasses import replace

        spec = replace(spec, re_dist=re_dist)
    if spec.re_dist is None:
        raise SpecError("the spec has no re_dist: give Spec(..., re_dist=glmmbayes.RandomEffect(...))")
    return spec


def make_problem(spec: Spec, data: pd.DataFrame, phi: float | None = None, re_dist: RandomEffect | None = None) -> Problem:
    """Evaluate `spec` (with a `re_dist`) on `data`.

    phi: the dispersion (sigma^2 for gaussian, 1/shape for Gamma); None estimates it by ML (where
    the family has one). McCulloch's model has gaussian errors with known variance: phi=1.
    A `Problem` passed as `spec` is returned as it is (so several fits share one design).
    """
    if isinstance(spec, Problem):
        return spec
    spec = _as_spec(spec, re_dist)
    d = build_design(spec, data)
    if len(d.terms) != 1 or d.terms[0].k != 1:
        raise SpecError(
            "non-normal random effects are implemented for one scalar random term such as (1 | g) "
            f"or (0 + x | g); got {', '.join(str(t) for t in d.terms)}"
        )
    t = d.terms[0]
    fam = d.family
    if not fam.has_dispersion:
        if phi not in (None, 1.0):
            raise SpecError(f"family {fam.name} has no dispersion parameter; phi must be None or 1")
        phi = 1.0
    elif phi is not None:
        phi = float(phi)
        if not (phi > 0 and math.isfinite(phi)):
            raise SpecError(f"phi must be positive and finite, got {phi!r}")
    n, q = d.n, t.nlevels
    G = sparse.csr_matrix((np.ones(n), (t.codes, np.arange(n))), shape=(q, n))
    return Problem(d, spec.re_dist, d.X, d.y, d.wt, d.offset, t.X[:, 0].astype(float).copy(),
                   np.asarray(t.codes), tuple(t.levels), t.group_name, phi, G)


# ------------------------------------------------------------------ the per-group integrand


def _u_of_t(re: RandomEffect, T):
    """u and log du/dt for the unconstrained coordinate t."""
    if re.support == "positive":
        T = np.minimum(T, 700.0)
        return np.exp(T), T
    return T, np.zeros_like(T)


def _log_integrand(prob: Problem, eta0, p, phi, T):
    """log [ prod_{i in j} f(y_i | eta0_i + z_i h(u)) f_u(u) du/dt ] at t = T[j, k]; T (q, K)."""
    re = prob.re
    u, logjac = _u_of_t(re, T)
    b = re.entry_fn(u)
    eta = eta0[:, None] + prob.z[:, None] * b[prob.codes]
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        ll = prob.family.loglik(prob.y[:, None], eta, prob.wt[:, None], phi)
        out = prob.G @ ll + re.logpdf(u, p) + logjac
    return np.where(np.isnan(out), -np.inf, out)


@dataclass(frozen=True)
class Grid:
    """Per-group trapezoid grids t[j, k] = c_j + s_j (zlo_j + k h), k = 0..K-1."""

    c: np.ndarray
    s: np.ndarray
    zlo: np.ndarray
    h: float
    K: int

    def nodes(self) -> np.ndarray:
        T = self.__dict__.get("_nodes")
        if T is None:
            k = np.arange(self.K)
            T = self.c[:, None] + self.s[:, None] * (self.zlo[:, None] + self.h * k[None, :])
            T.setflags(write=False)
            object.__setattr__(self, "_nodes", T)
        return T

    def logw(self) -> np.ndarray:
        return np.log(self.s * self.h)


def _prior_range(re: RandomEffect, p) -> tuple[float, float]:
    fr = re.frozen(p)
    lo, hi = fr.ppf(1e-12), fr.isf(1e-12)
    if re.support == "positive":
        lo, hi = math.log(max(lo, 1e-300)), math.log(hi)
    span = hi - lo
    return lo - 0.25 * span, hi + 0.25 * span


def build_grid(prob: Problem, beta, p, phi, h: float = 0.25, drop: float = 40.0) -> Grid:
    """Locate each group's mode in t (coarse grid, then Newton with finite differences), the
    curvature scale s_j, and the tail cut-offs; return the trapezoid grid."""
    eta0 = prob.offset + prob.X @ beta
    q = prob.q
    lo, hi = _prior_range(prob.re, p)
    Tc = np.linspace(lo, hi, 401)
    Lc = _log_integrand(prob, eta0, p, phi, np.broadcast_to(Tc, (q, Tc.size)))
    c = Tc[np.argmax(Lc, axis=1)]
    dt = Tc[1] - Tc[0]
    f = lambda T: _log_integrand(prob, eta0, p, phi, T)  # noqa: E731
    step = np.full(q, dt)
    for _ in range(60):
        dlt = 1e-4 * step
        v = f(np.stack([c - dlt, c, c + dlt], axis=1))
        g1 = (v[:, 2] - v[:, 0]) / (2 * dlt)
        g2 = (v[:, 2] - 2 * v[:, 1] + v[:, 0]) / (dlt * dlt)
        newton = np.where(g2 < 0, -g1 / np.where(g2 < 0, g2, -1.0), np.sign(g1) * step)
        move = np.clip(newton, -step, step)
        cand = c + move
        vc = f(cand[:, None])[:, 0]
        better = vc >= v[:, 1]
        c = np.where(better, cand, c)
        step = np.where(better, np.maximum(np.abs(move) * 2, 1e-8), step / 4)
        if np.all(np.abs(move) < 1e-9 * (1 + np.abs(c))) or np.all(step < 1e-10):
            break
    # curvature scale
    dlt = 1e-3 * np.maximum(1.0, np.abs(c))
    for _ in range(3):
        v = f(np.stack([c - dlt, c, c + dlt], axis=1))
        g2 = (v[:, 2] - 2 * v[:, 1] + v[:, 0]) / (dlt * dlt)
        s = np.where(g2 < 0, 1.0 / np.sqrt(np.where(g2 < 0, -g2, 1.0)), dt)
        dlt = np.minimum(dlt, 0.1 * s)
    top = v[:, 1]
    # tails: smallest Z (powers of 2) on each side where the log integrand is `drop` below the top
    Zs = 2.0 ** np.arange(2, 16)
    zl = np.full(q, np.nan)
    zr = np.full(q, np.nan)
    for Z in Zs:
        v = f(np.stack([c - Z * s, c + Z * s], axis=1))
        zl = np.where(np.isnan(zl) & (v[:, 0] < top - drop), Z, zl)
        zr = np.where(np.isnan(zr) & (v[:, 1] < top - drop), Z, zr)
        if not (np.isnan(zl).any() or np.isnan(zr).any()):
            break
    if np.isnan(zl).any() or np.isnan(zr).any():
        raise RuntimeError("non-normal ML: a per-group integrand does not decay; check the model")
    K = int(np.ceil(np.max(zl + zr) / h)) + 1
    return Grid(c, s, -zl, h, K)


def group_logliks(prob: Problem, beta, p, phi, grid: Grid) -> np.ndarray:
    """log ∫ f(y_j | u) f(u) du for each group on a fixed grid."""
    L = _log_integrand(prob, prob.offset + prob.X @ beta, p, phi, grid.nodes())
    return logsumexp(L, axis=1) + grid.logw()


def loglik(prob: Problem, beta, p: Mapping | None = None, phi: float | None = None, grid: Grid | None = None) -> float:
    """The exact marginal log-likelihood (fully normalized) at (beta, RE params, phi)."""
    beta = np.asarray(beta, float)
    p = prob.re.values(p)
    phi = prob.phi if phi is None else phi
    if phi is None:
        raise SpecError("phi is estimated in this problem: give its value")
    if grid is None:
        grid = build_grid(prob, beta, p, phi)
    return float(np.sum(group_logliks(prob, beta, p, phi, grid)))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NonNormalFit:
    """Result of `fit_ml` / `fit_joint`."""

    method: str  # "ml" or "joint"
    parameterization: str | None  # "u" / "w" for joint; None for ML (invariant)
    re_dist: RandomEffect
    beta: pd.Series
    se: pd.Series | None  # ML: from the observed information; joint: None
    re_params: dict  # all RE parameters (known and estimated)
    phi: float
    loglik: float  # ML: marginal log-likelihood; joint: log f(y, u) at the joint mode
    ranef: pd.Series  # w_j = h(u_j): conditional means E[w_j | y] (ML) or joint modes
    converged: bool
    messages: tuple[str, ...]
    nfev: int
    seconds: float
    raw: Any = field(default=None, repr=False)

    def summary(self) -> str:
        head = f"{self.method}" + (f" ({self.parameterization}-parameterization)" if self.parameterization else "")
        lines = [f"{head}: {self.re_dist}", f"loglik = {self.loglik:.6f}"]
        for nm, b in self.beta.items():
            se = f"  (se {self.se[nm]:.4g})" if self.se is not None else ""
            lines.append(f"  {nm:<20s} {b: .6g}{se}")
        lines.append(f"  RE params: {self.re_params}; phi = {self.phi:g}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- ML


def _unpack(prob: Problem, theta):
    p_ = prob.p
    beta = theta[:p_]
    est = prob.re.estimated
    pe = {nm: math.exp(theta[p_ + i]) for i, nm in enumerate(est)}
    phi = prob.phi if prob.phi is not None else math.exp(theta[p_ + len(est)])
    return beta, prob.re.values(pe), phi


def _glm_start(prob: Problem, p0) -> np.ndarray:
    """Least squares on the link scale of the mustart values, with the random effect at its
    mean, as the starting beta."""
    fam = prob.family
    mu = fam.mustart(prob.y, prob.wt)
    with np.errstate(all="ignore"):
        eta = fam.linkfun(np.clip(mu, *fam.dist.mu_bounds))
    m = prob.re.simulate(np.random.default_rng(0), 4000, p0).mean()
    r = eta - prob.offset - prob.z * m
    if prob.p == 0:
        return np.zeros(0)
    beta, *_ = np.linalg.lstsq(prob.X, r, rcond=None)
    return beta


def fit_ml(spec: Spec | Problem, data: pd.DataFrame | None = None, phi: float | None = None, start: Mapping | None = None,
           re_dist: RandomEffect | None = None, tol: float = 1e-9, max_rounds: int = 6) -> NonNormalFit:
    """Exact ML for a non-normal random-effect model by per-group quadrature.

    Maximizes over beta, the estimated RE parameters (on the log scale) and phi when it is None
    and the family has a dispersion. `start`: optional {"beta": array, <param>: value, "phi": v}.
    """
    t0 = time.perf_counter()
    prob = make_problem(spec, data, phi, re_dist)
    re = prob.re
    est = re.estimated
    start = dict(start or {})
    p_start = {nm: float(start.get(nm, 1.0)) for nm in est}
    p0 = re.values(p_start)
    beta0 = np.asarray(start["beta"], float) if "beta" in start else _glm_start(prob, p0)
    theta = np.concatenate([beta0, np.log([p_start[nm] for nm in est])])
    if prob.phi is None:
        if "phi" in start:
            phi0 = float(start["phi"])
        else:
            eta = prob.offset + prob.X @ beta0
            phi0 = float(np.var(prob.y - prob.family.linkinv(eta))) if prob.family.name == "gaussian" else 1.0
            phi0 = max(phi0, 1e-3)
        theta = np.concatenate([theta, [math.log(phi0)]])
    nfev = 0
    msgs: list[str] = []
    converged = False
    res = None
    for _ in range(max_rounds):
        beta, pv, ph = _unpack(prob, theta)
        grid = build_grid(prob, beta, pv, ph)

        def nll(th):
            nonlocal nfev
            nfev += 1
            b, pv_, ph_ = _unpack(prob, th)
            val = -np.sum(group_logliks(prob, b, pv_, ph_, grid))
            return val if np.isfinite(val) else 1e300

        with single_threaded_blas():
            res = optimize.minimize(nll, theta, method="BFGS", jac="3-point",
                                    options={"gtol": 1e-7 * max(1.0, prob.design.n ** 0.5), "maxiter": 1000})
        if not res.success and "precision" not in str(res.message):
            msgs.append(f"BFGS: {res.message}")
        moved = np.max(np.abs(res.x - theta)) if theta.size else 0.0
        theta = res.x
        if moved < tol:
            converged = True
            break
    if not converged:
        msgs.append(f"ML did not settle within {max_rounds} grid rebuilds")
    beta, pv, ph = _unpack(prob, theta)
    grid = build_grid(prob, beta, pv, ph)
    ll = float(np.sum(group_logliks(prob, beta, pv, ph, grid)))
    # observed information for beta (and the rest) by finite differences of the exact loglik
    se = None
    try:
        Hm = _hessian(lambda th: -np.sum(group_logliks(prob, *_unpack(prob, th), grid)), theta)
        V = np.linalg.inv(Hm)
        se = pd.Series(np.sqrt(np.diag(V))[: prob.p], index=list(prob.fixef_names))
    except (np.linalg.LinAlgError, ValueError):
        msgs.append("observed information not invertible: no standard errors")
    # conditional means of w_j = h(u_j)
    T = grid.nodes()
    L = _log_integrand(prob, prob.offset + prob.X @ beta, pv, ph, T)
    wts = np.exp(L - logsumexp(L, axis=1, keepdims=True))
    bnodes = re.entry_fn(_u_of_t(re, T)[0])
    ranef = pd.Series(np.sum(wts * bnodes, axis=1), index=list(prob.levels), name=f"E[w|y] ({prob.group})")
    return NonNormalFit("ml", None, re, pd.Series(beta, index=list(prob.fixef_names)), se, pv, ph, ll,
                        ranef, converged, tuple(msgs), nfev, time.perf_counter() - t0, res)


def _hessian(f, x, eps=1e-4):
    x = np.asarray(x, float)
    k = x.size
    H = np.empty((k, k))
    hs = eps * np.maximum(1.0, np.abs(x))
    for i in range(k):
        for j in range(i, k):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i] = hs[i]
            ej[j] = hs[j]
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * hs[i] * hs[j])
            H[i, j] = H[j, i] = v
    return H


# --------------------------------------------------------------------------- joint


def _score_eta(prob: Problem, eta, phi):
    """d loglik / d eta per row: wt (y - mu) mu_eta / (phi V(mu)) (the exponential-family score)."""
    fam = prob.family
    mu = fam.linkinv(eta)
    return prob.wt * (prob.y - mu) * fam.mu_eta(eta) / (phi * fam.variance(mu))


def _re_term(re: RandomEffect, b, p, parameterization: str):
    """log prior term of the joint density as a function of b = h(u) and its derivative."""
    u = re.entry_inv(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = re.logpdf(u, p)
        d = re.spec.dlogpdf(u, p)
        if re.entry == "sqrt":
            d = d * 2.0 * b
            if parameterization == "w":
                val = val + np.log(2.0 * b)
                d = d + 1.0 / b
    return val, d


def joint_objective(prob: Problem, beta, b, parameterization: str = "u", p=None, phi=None):
    """log f(y, u | beta) at the random effects b = h(u) (the u-parameterization) or log f(y, w)
    with w = b (the w-parameterization), and its gradient in (beta, b)."""
    p = prob.re.values(p)
    phi = prob.phi if phi is None else phi
    eta = prob.offset + prob.X @ beta + prob.z * b[prob.codes]
    ll = prob.family.loglik(prob.y, eta, prob.wt, phi)
    rv, rd = _re_term(prob.re, b, p, parameterization)
    val = float(np.sum(ll) + np.sum(rv))
    s = _score_eta(prob, eta, phi)
    g_beta = prob.X.T @ s
    g_b = prob.G @ (s * prob.z) + rd
    return val, np.concatenate([g_beta, g_b])


def fit_joint(spec: Spec | Problem, data: pd.DataFrame | None = None, parameterization: str = "u", phi: float | None = None,
              constrain: bool = True, re_dist: RandomEffect | None = None, start=None) -> NonNormalFit:
    """Joint maximization of log f(y, u | beta) over (beta, u) (MAP with a flat prior on beta).

    parameterization: "u" maximizes over the latent u as declared in the RandomEffect (with an
    entry "sqrt": McCulloch's Z u^½, density f_u); "w" over w = h(u) (Z w, density f_w = f_u(w²) 2w).
    The maximization is carried out over w = h(u) in both cases (the maximizer of a function does
    not depend on the coordinates); only the density differs.

    constrain: for the u-parameterization with entry "sqrt", keep u >= 0 (the model's parameter
    space; the mode can sit on the boundary u_j = 0). constrain=False lets u^½ range over the real
    line with log f_u evaluated at (u^½)² — this is McCulloch's closed-form estimator (his eqs. 6–7,
    used for his Table 1: his u^½ = (Z'Z + 2λI)⁻¹Z'(Y - Xβ) can be negative).

    All RE parameters must be known, and phi too for families with a dispersion.
    """
    t0 = time.perf_counter()
    if parameterization not in PARAMETERIZATIONS:
        raise SpecError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    prob = make_problem(spec, data, phi, re_dist)
    re = prob.re
    if re.estimated:
        raise SpecError(
            f"joint maximization needs known RE parameters; {', '.join(re.estimated)} estimated "
            "(maximizing jointly over them and u is degenerate)"
        )
    if prob.phi is None:
        raise SpecError("joint maximization needs the dispersion: give phi=")
    p = re.values()
    q = prob.q
    positive = re.support == "positive"
    if start is None:
        beta0 = _glm_start(prob, p)
        b0 = np.full(q, float(np.mean(re.simulate(np.random.default_rng(0), 4000, p))))
    else:
        beta0, b0 = np.asarray(start[0], float), np.asarray(start[1], float)
    x0 = np.concatenate([beta0, b0])
    if positive and not (parameterization == "u" and re.entry == "sqrt" and not constrain):
        lb = 0.0 if (parameterization == "u" and re.entry == "sqrt") else 1e-300
        bounds = [(None, None)] * prob.p + [(lb, None)] * q
    else:
        bounds = None
    nfev = 0

    def f(x):
        nonlocal nfev
        nfev += 1
        v, g = joint_objective(prob, x[: prob.p], x[prob.p:], parameterization, p, prob.phi)
        if not np.isfinite(v):
            return 1e300, np.zeros_like(x)
        return -v, -g

    with single_threaded_blas():
        res = optimize.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": 20000, "maxfun": 50000, "ftol": 1e-15, "gtol": 1e-11,
                                         "maxcor": 30})
    msgs = []
    gnorm = np.max(np.abs(_projected_grad(res.x, -f(res.x)[1], bounds)))
    converged = gnorm < 1e-6 * max(1.0, prob.design.n ** 0.5)
    if not converged:
        msgs.append(f"joint maximization: projected gradient {gnorm:.2g} ({res.message})")
    beta, b = res.x[: prob.p], res.x[prob.p:]
    val = -float(res.fun)
    return NonNormalFit("joint", parameterization, re, pd.Series(beta, index=list(prob.fixef_names)), None,
                        p, prob.phi, val,
                        pd.Series(b, index=list(prob.levels), name=f"mode w ({prob.group})"),
                        converged, tuple(msgs), nfev, time.perf_counter() - t0, res)


def _projected_grad(x, g, bounds):
    if bounds is None:
        return g
    g = g.copy()
    for i, (lo, _) in enumerate(bounds):
        if lo is not None and x[i] <= lo + 1e-12 and g[i] < 0:  # ascent direction g points below the bound
            g[i] = 0.0
    return g


# --------------------------------------------------------------------------- PyMC


def to_pymc_nonnormal(spec: Spec, data: pd.DataFrame, priors: Mapping[str, Any] | None = None,
                      parameterization: str = "u", phi: float | None = None,
                      re_dist: RandomEffect | None = None):
    """The PyMC model of a non-normal random-effect GLMM.

    parameterization "u": the latent ``u_<group>`` has density f_u (positive u sampled on the log
    scale, the Jacobian added) and enters as h(u); "w": ``w_<group>`` = h(u) has density
    f_w(w) = f_u(h⁻¹(w)) |dh⁻¹/dw|. Both give the same posterior for beta (the modes differ).
    ``w_<group>`` (the random effect as it enters the linear predictor) is recorded in both.

    priors: {"beta": None (flat, the default: McCulloch's flat-prior posterior) or a float sd of
    independent Normal(0, sd) priors; "<RE parameter>" / "sigma" (gaussian) / "shape" (Gamma):
    float scale of a HalfNormal prior for an estimated parameter (default 10)}.
    phi: a known dispersion (sigma^2 for gaussian); None puts a prior on it.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from .families import pytensor_ops

    if parameterization not in PARAMETERIZATIONS:
        raise SpecError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    prob = make_problem(spec, data, phi, re_dist)
    re = prob.re
    priors = dict(priors or {})
    ops = pytensor_ops()
    fam = prob.family
    g = prob.group
    coords = {"fixef": list(prob.fixef_names), g: list(prob.levels)}
    with pm.Model(coords=coords) as model:
        if prob.p:
            if priors.get("beta") is None:
                beta = pm.Flat("beta", dims="fixef")
            else:
                beta = pm.Normal("beta", 0.0, float(priors["beta"]), dims="fixef")
        pv: dict[str, Any] = dict(re.known)
        for nm in re.estimated:
            pv[nm] = pm.HalfNormal(nm, sigma=float(priors.get(nm, 10.0)))
        positive = re.support == "positive"
        name = f"{'u' if parameterization == 'u' else 'w'}_{g}"
        if positive:
            t = pm.Flat(f"log_{name}", dims=g)
            v = pm.Deterministic(name, pt.exp(t), dims=g)
            logjac = t
        else:
            v = pm.Flat(name, dims=g)
            logjac = 0.0
        if parameterization == "u":
            dens = re.logpdf(v, pv, ops)
            w = pm.Deterministic(f"w_{g}", re.entry_fn(v, ops), dims=g) if re.entry != "identity" else v
        else:
            dens = re.logpdf_entry(v, pv, ops)
            w = v
        pm.Potential(f"{name}_density", pt.sum(dens + logjac))
        eta = pt.as_tensor_variable(prob.offset) + pt.as_tensor_variable(prob.z) * w[prob.codes]
        if prob.p:
            eta = eta + pt.dot(prob.X, beta)
        if prob.phi is not None:
            phi_t = pt.constant(prob.phi)
        elif fam.name == "gaussian":
            sigma = pm.HalfNormal("sigma", sigma=float(priors.get("sigma", 10.0)))
            phi_t = sigma * sigma
        else:
            shape = pm.HalfNormal("shape", sigma=float(priors.get("shape", 10.0)))
            phi_t = 1.0 / shape
        wt = prob.wt

        def logp(value, eta, phi):
            return fam.loglik(value, eta, wt, phi, ops=ops)

        y_obs = pm.Data("y_obs", prob.y)  # pm.set_data({"y_obs": ...}) refits new responses
        pm.CustomDist("y", eta, phi_t, logp=logp, observed=y_obs)
    model.glmm_problem = prob
    return model


def sample_nonnormal(spec: Spec, data: pd.DataFrame, parameterization: str = "u", phi: float | None = None,
                     priors=None, draws: int = 1000, tune: int = 1000, chains: int = 2, seed: int = 0,
                     re_dist: RandomEffect | None = None, **kw):
    """NUTS on `to_pymc_nonnormal`; returns ArviZ InferenceData."""
    import pymc as pm

    model = to_pymc_nonnormal(spec, data, priors, parameterization, phi, re_dist)
    prob = model.glmm_problem
    init = {}
    if prob.p:
        init["beta"] = _glm_start(prob, prob.re.values({nm: 1.0 for nm in prob.re.estimated}))
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False,
                          compute_convergence_checks=False, initvals=init or None, **kw)
    return idata
