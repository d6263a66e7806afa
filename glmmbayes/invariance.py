"""Which estimators survive a change of parameterization of a variance component?

For one random-effect standard deviation σ the posterior is computed on a grid:

    p(σ | y) ∝ π(σ) ∫ L(β, σ) dβ,

with the other variance parameters at their ML values and β integrated out by the Laplace
approximation (flat prior on β: the profile deviance plus ½ log|RX RX'|). On the scales
ψ = σ, log σ, σ², σ⁻² the density is p_ψ(ψ) = p(σ(ψ)) |dσ/dψ|. Then

- the ML estimate is equivariant: ψ̂ = g(σ̂) on every scale;
- the posterior mean of a fixed quantity (say σ) is the same whichever scale the integral is
  computed on, because the Jacobian is part of the density;
- the posterior mode (MAP) is not: the Jacobian moves the maximum, so the mode of log σ, of σ
  and of σ² are three different values of σ.

This is McCulloch's point (seed 000) for joint maximization, shown on variance components.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .api import fit as fit_model
from .spec import as_spec
from .core import objective as ob
from .core.linalg import factorize
from .core.optimize import minimize_deviance
from .core.pirls import pirls
from .design import build_design
from .errors import SpecError

# scale: (ψ from σ, σ from ψ, dσ/dψ as a function of σ)
SCALES = {
    "sd": (lambda s: s, lambda p: p, lambda s: np.ones_like(s)),
    "log_sd": (np.log, np.exp, lambda s: s),
    "variance": (lambda s: s**2, np.sqrt, lambda s: 1.0 / (2.0 * s)),
    "precision": (lambda s: s**-2.0, lambda p: p**-0.5, lambda s: 0.5 * s**3),
}


@dataclass(frozen=True)
class InvarianceResult:
    table: pd.DataFrame  # one row per scale
    grid: pd.DataFrame  # sigma, log profile likelihood, log posterior (σ scale)
    group: str
    prior: str

    @property
    def scales(self):
        """scale -> (ψ from σ, σ from ψ, dσ/dψ): the transforms the table and the plot use."""
        return SCALES

    def plot(self, **kw):
        from .plots import invariance_plot

        return invariance_plot(self, **kw)

    def __str__(self) -> str:
        t = self.table
        mode = [f"{r.posterior_mode_as_sd:.4f}" if not r.mode_at_boundary else r.mode_note for r in t.itertuples()]
        out = pd.DataFrame({
            "scale": t["scale"], "ML (σ)": t["ml_as_sd"], "E[σ]": t["posterior_mean_of_sd"],
            "posterior mode (σ)": mode, "local mode (σ)": t["local_mode_as_sd"],
            "equal-tailed (σ)": [f"[{a:.4f}, {b:.4f}]" for a, b in zip(t["eti_lower_as_sd"], t["eti_upper_as_sd"])],
            "HDI, not invariant (σ)": [f"[{a:.4f}, {b:.4f}]" for a, b in zip(t["hdi_lower_as_sd"], t["hdi_upper_as_sd"])],
        })
        return (f"Variance component of '{self.group}' on four scales (prior on the sd: {self.prior}; "
                f"every value shown as σ)\n" + out.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


# what ψ is called and where it goes as σ → 0, for the boundary-mode message
_SYMBOL = {"sd": ("σ", "0"), "log_sd": ("log σ", "-∞"), "variance": ("σ²", "0"), "precision": ("σ⁻²", "∞")}


def _trapz(y, x):
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def _cumtrapz(y, x):
    return np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])


def boundary_exponent(name: str, sig: np.ndarray, logpost: np.ndarray) -> float:
    """a in p_ψ(ψ(σ)) ~ σ^a as σ → 0, from the two smallest grid points: a < 0 means the density
    on this scale is unbounded at the boundary, a = 0 finite and non-zero there, a > 0 zero.
    A prior finite and non-zero at σ = 0 gives 0 on the sd scale and -1 on the variance scale
    (the Jacobian |dσ/dσ²| = 1/(2σ))."""
    jac = SCALES[name][2]
    lp = logpost[:2] + np.log(jac(sig[:2]))
    return float((lp[1] - lp[0]) / (np.log(sig[1]) - np.log(sig[0])))


def scale_summary(name: str, sig: np.ndarray, logpost: np.ndarray, sig_ml: float, sig_grid_ml: float,
                  level: float = 0.95) -> dict:
    """One scale's row: ML; posterior mean of ψ and of σ computed on this scale; the posterior
    mode, or the boundary when the density rises to it (`mode_at_boundary`, `mode_note`), with
    the interior local mode kept apart (`local_mode`); the equal-tailed `level` interval
    (`eti_*`, invariant: the same σ on every scale) and the highest-density set's span (`hdi_*`,
    not invariant). `*_as_sd` columns give each value as σ."""
    to, frm, dsdpsi = SCALES[name]
    expo = boundary_exponent(name, sig, logpost)
    # the log density is smooth in log σ: interpolate it 10x finer for the intervals and modes
    ls = np.log(np.asarray(sig, float))
    fine = np.linspace(ls[0], ls[-1], 10 * (len(ls) - 1) + 1)
    logpost = np.interp(fine, ls, logpost)
    sig = np.exp(fine)
    psi = to(sig)
    dens = np.exp(logpost - logpost.max()) * dsdpsi(sig)
    srt = np.argsort(psi)
    psi_s, dens_s, sig_s = psi[srt], dens[srt], sig[srt]
    norm = _trapz(dens_s, psi_s)
    # ETI from this scale's own density (the invariance is shown, not assumed)
    cdf = _cumtrapz(dens_s, psi_s) / norm
    a = (1 - level) / 2
    eti = np.interp([a, 1 - a], cdf, psi_s)
    # HDI: cells of the ψ grid by decreasing density until `level` of the mass
    cell_mass = 0.5 * (dens_s[1:] + dens_s[:-1]) * np.diff(psi_s)
    order = np.argsort(-0.5 * (dens_s[1:] + dens_s[:-1]))
    chosen = order[: int(np.searchsorted(np.cumsum(cell_mass[order]), level * norm)) + 1]
    hdi = np.array([psi_s[chosen.min()], psi_s[chosen.max() + 1]])
    # the mode: at the σ → 0 boundary when the density does not fall towards it
    j = int(np.argmax(dens))
    with np.errstate(divide="ignore"):
        edge = float(to(np.array(0.0)))  # ψ at σ = 0: 0, -∞ or ∞
    sym, limit = _SYMBOL[name]
    interior = [i for i in range(1, len(sig) - 1) if dens[i] >= dens[i - 1] and dens[i] >= dens[i + 1]]
    local = max(interior, key=lambda i: dens[i]) if interior else None
    if expo < -0.5:
        at_boundary, note = True, f"mode at the boundary: density → ∞ as {sym} → {limit}"
    elif expo <= 0.5 and j == 0:
        at_boundary, note = True, f"mode at the boundary {sym} = {limit} (finite density)"
    else:
        at_boundary, note = False, "interior mode"
    if at_boundary:
        mode, mode_sd = float(edge), 0.0
        increasing = bool(psi[1] > psi[0])  # ψ grows with σ: the σ → 0 boundary is ψ's lower end
        if (0 if increasing else len(psi_s) - 2) in chosen:  # the highest-density set reaches it
            hdi[0 if increasing else 1] = edge
    else:
        mode, mode_sd = float(psi[j]), float(sig[j])
    as_sd = lambda v: np.sort(frm(np.asarray(v, float)))  # noqa: E731 -- decreasing scales swap ends
    with np.errstate(divide="ignore"):
        eti_sd, hdi_sd = as_sd(eti), as_sd(hdi)
    return {
        "ml": float(to(np.array(sig_ml))),
        "ml_as_sd": float(frm(to(np.array(sig_ml)))),
        "grid_argmax_lik_as_sd": float(sig_grid_ml),
        "posterior_mean": _trapz(psi_s * dens_s, psi_s) / norm,
        "posterior_mean_of_sd": _trapz(sig_s * dens_s, psi_s) / norm,  # E[σ] computed on this scale
        "posterior_mode": mode,
        "posterior_mode_as_sd": mode_sd,
        "mode_at_boundary": at_boundary,
        "boundary_exponent": expo,
        "mode_note": note,
        "local_mode": np.nan if local is None else float(psi[local]),
        "local_mode_as_sd": np.nan if local is None else float(sig[local]),
        "eti_lower": float(eti[0]), "eti_upper": float(eti[1]),
        "eti_lower_as_sd": float(eti_sd[0]), "eti_upper_as_sd": float(eti_sd[1]),
        "hdi_lower_as_sd": float(hdi_sd[0]), "hdi_upper_as_sd": float(hdi_sd[1]),
    }


def variance_component_invariance(spec, data, group: str | None = None, prior=None,
                                  n_grid: int = 241, level: float = 0.95, **spec_kw) -> InvarianceResult:
    """ML, posterior mean, posterior mode and `level` intervals of one random-effect sd on four
    scales (`InvarianceResult.table`, one row per scale; columns in `scale_summary`).

    prior: a prior spec for the sd as accepted by the hmc method (e.g. "half_normal(1)"); the
    package default for sds when None. The model's term for `group` must be scalar (k = 1).
    """
    from .priors import resolve_priors

    spec = as_spec(spec, **spec_kw)
    design = build_design(spec, data)
    if design.family.is_lmm:
        raise SpecError("variance_component_invariance is written for GLMMs (absolute Λ); "
                        "for the gaussian LMM fit a GLMM-free comparison instead")
    scalar = [i for i, t in enumerate(design.terms) if t.k == 1]
    if group is None:
        if not scalar:
            raise SpecError("the model has no scalar random-effect term")
        ti = scalar[0]
    else:
        names = [t.group_name for t in design.terms]
        if group not in names:
            raise SpecError(f"no random-effect term for group {group!r}; terms: {names}")
        ti = names.index(group)
        if design.terms[ti].k != 1:
            raise SpecError(f"the term for {group!r} has {design.terms[ti].k} coefficients; pick a scalar term")
    term = design.terms[ti]
    pri = resolve_priors(design, {"sd": {term.group_name: prior}} if prior is not None else spec.priors)
    sd_prior = pri.sd[(term.group_name, term.coef_names[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = fit_model(spec, data)
    s = design.structure
    k0 = int(s.theta_offsets[ti])
    prob = design.problem()
    sig_ml = float(ml.theta_hat[k0])
    V = ml.estimate.vcov_full
    se = np.sqrt((V if V is not None else np.eye(len(ml.theta_hat)) * 0.25)[k0, k0])
    lo = max(sig_ml * 1e-3, 1e-4) if sig_ml > 0 else 1e-4
    hi = max(sig_ml + 8 * se, 4 * max(sig_ml, 0.1))
    sig = np.exp(np.linspace(np.log(lo), np.log(hi), n_grid))

    warm = ob.WarmStart(s.q, ml.beta_hat)
    warm.u = ml.u
    prof, logmarg = np.empty(n_grid), np.empty(n_grid)
    beta = ml.beta_hat.copy()
    # march outward from the ML value so every β optimization starts close to its answer
    order = np.argsort(np.abs(np.log(sig) - np.log(max(sig_ml, lo))))
    for i in order:
        theta = ml.theta_hat.copy()
        theta[k0] = sig[i]

        def f(b, theta=theta):
            return ob.laplace(prob, theta, b, warm)

        def vg(b, theta=theta):
            st = pirls(prob, theta, b, warm.u)
            warm.update(st)
            return ob.laplace_value(prob, st), ob.laplace_gradient(prob, st, theta=False)[1]

        r = minimize_deviance(f, beta, np.full(len(beta), -np.inf), np.linalg.cholesky(ml.vcov_beta),
                              value_and_grad=vg)
        st = pirls(prob, theta, r.x, warm.u)
        rx = factorize(s, st.V, st.weights, design.X)
        prof[i] = -0.5 * r.fun
        logmarg[i] = prof[i] - 0.5 * rx.ldRX2
        beta = r.x
    logpost = logmarg + sd_prior.logpdf(sig)
    logpost -= logpost.max()
    rows = [dict(scale=name, **scale_summary(name, sig, logpost, sig_ml, sig[int(np.argmax(prof))], level))
            for name in SCALES]
    grid = pd.DataFrame({"sigma": sig, "log_profile_lik": prof, "log_marginal": logmarg, "log_posterior": logpost})
    return InvarianceResult(pd.DataFrame(rows), grid, term.group_name, str(sd_prior))
