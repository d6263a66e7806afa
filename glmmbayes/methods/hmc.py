"""method="hmc": the posterior by NUTS (PyMC's sampler by default, nutpie when chosen).

The model is `glmmbayes.pymc_model.build_model` of the same Design. Chains start from the
Laplace ML fit (β̂, θ̂ and the conditional modes ũ, jittered per chain by about one posterior sd),
and the fixed effects are sampled on the ML-whitened basis β = β̂ + chol(V̂) z (QR basis of the
centred X when the ML covariance is unusable). The Fit reports posterior means (β, sds,
correlations, random effects) and, in ``fit.sampler`` (a `SamplerReport`), the draws, medians,
sds, HDIs, R-hat, ESS, divergences and the MAP (summaries: `glmmbayes.posterior`). R-hat > 1.01, bulk ESS < max(400, 100·chains), tail ESS < 100·chains, any divergence or an
E-BFMI < 0.3 make ``converged`` False with a message naming the parameters (and `glmmbayes.fit`
warns with a ConvergenceWarning).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..design import Design
from ..errors import SpecError
from ..estimate import Estimate, MAPEstimate, SamplerReport
from ..posterior import (MAP_PARAMETERIZATION, diagnostics, find_map, pointwise_loglik, posterior_re, public_first,
                         summary_rows)
from ..posterior import draws as posterior_draws
from ..priors import Priors, resolve_priors
from .options import Option, anything, boolean, choice, integer, number, optional


def _interactive() -> bool:
    """A person is watching: a terminal, or a Jupyter kernel (whose streams are not ttys)."""
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    try:
        if sys.stderr.isatty() and sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


# ------------------------------------------------------------------------ starting values


def _start_point(design: Design, ml, priors: Priors) -> dict[str, np.ndarray]:
    """The ML point in the model's (constrained) variables; b = Λ ũ becomes u = L⁻¹ b."""
    pt: dict[str, np.ndarray] = {}
    if design.p:
        pt["beta_z"] = np.zeros(design.p)  # the ML basis is centred at β̂
    s = design.structure
    lam = s.lambdas(ml.theta_hat)
    re_scale = design.family.re_scale(ml.phi)
    for i, (t, T) in enumerate(zip(design.terms, lam)):
        g = t.group_name
        U = ml.u[s.u_offsets[i] : s.u_offsets[i + 1]].reshape(t.nlevels, t.k)
        Bml = U @ T.T  # random effects b
        S = re_scale * T @ T.T
        floor = np.array([0.1 * priors.sd[(g, c)].args[-1] for c in t.coef_names])
        sd = np.maximum(np.sqrt(np.diag(S)), floor)
        if t.k == 1:
            pt[f"sd_{g}"] = sd
            pt[f"u_{g}"] = Bml / sd[None, :]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                R = S / np.outer(np.sqrt(np.diag(S)), np.sqrt(np.diag(S)))
            R = np.where(np.isfinite(R), R, 0.0)
            R = 0.9 * R + 0.1 * np.eye(t.k)  # keep away from the LKJ boundary
            np.fill_diagonal(R, 1.0)
            L = np.linalg.cholesky(np.outer(sd, sd) * R)
            pt[f"chol_{g}"] = L[np.tril_indices(t.k)]
            pt[f"u_{g}"] = np.linalg.solve(L, Bml.T).T
    disp = design.family.dispersion
    if disp is not None and disp.name in priors.dispersion:
        pt[disp.name] = np.array(disp.to_param(ml.phi))
    return pt


def _nonnormal_start(design: Design, ml, priors: Priors, parameterization: str) -> dict[str, np.ndarray]:
    """The exact-ML point of a non-normal model: β, the parameters, E[b | y] as the effects."""
    from ..pymc_model import nonnormal_variable

    re = design.spec.re_dist
    pt: dict[str, np.ndarray] = {}
    if design.p:
        pt["beta_z"] = np.zeros(design.p)
    for nm in re.estimated:
        pt[f"re_{nm}"] = np.array(ml.re_params[nm])
    b = ml.ranef[design.terms[0].group_name].to_numpy()[:, 0]
    v = re.entry_inv(b) if parameterization == "u" else b
    name = nonnormal_variable(design, parameterization)
    if re.support == "positive":
        pt[f"log_{name}"] = np.log(np.maximum(v, 1e-8))
    else:
        pt[name] = v
    disp = design.family.dispersion
    if disp is not None and disp.name in priors.dispersion:
        pt[disp.name] = np.array(disp.to_param(ml.phi))
    return pt


_SEPARATED_SE = 1e3  # a fixed-effect se beyond this on the link scale: the likelihood has no maximum


def _usable_start(ml) -> bool:
    """Whether the ML fit can give the chains their start and the fixed effects their basis: not
    where it did not converge or has no finite maximum (separation, an all-zero response): its
    point and covariance would make the whitened basis and the first energies overflow. Then the
    chains start from the prior in the QR basis."""
    if ml is None or not getattr(ml, "converged", True):
        return False
    beta, V = np.asarray(ml.beta_hat, float), np.asarray(ml.vcov_beta, float)
    return bool(np.all(np.isfinite(beta)) and np.all(np.isfinite(V))
                and (V.size == 0 or float(np.sqrt(np.max(np.diag(V)))) < _SEPARATED_SE))


def _jitter(design: Design, start: dict, ml, rng: np.random.Generator, basis_kind: str, scale: float):
    """One chain's start: about `scale` posterior sds away from the ML point."""
    out = {}
    for k, v in start.items():
        v = np.asarray(v, float)
        if k == "beta_z":
            out[k] = v + scale * rng.standard_normal(v.shape) * (1.0 if basis_kind == "ml" else 0.1)
        elif k.startswith("u_"):
            out[k] = v + scale * 0.5 * rng.standard_normal(v.shape)
        elif k.startswith("sd_") or k in DISPERSION_NAMES:
            out[k] = v * np.exp(0.2 * scale * rng.standard_normal(v.shape))
        elif k.startswith("chol_"):
            kk = int(round((math.sqrt(8 * v.size + 1) - 1) / 2))
            L = np.zeros((kk, kk))
            L[np.tril_indices(kk)] = v
            L = np.exp(0.2 * scale * rng.standard_normal(kk))[:, None] * L
            out[k] = L[np.tril_indices(kk)]
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------------ the method


DISPERSION_NAMES = ("sigma", "shape")
FULL_MASS_MAX = 100  # unconstrained parameters up to which NUTS adapts a dense mass matrix


def run(
    design: Design,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "pymc",
    priors: Mapping[str, Any] | Priors | None = None,
    cores: int | None = None,
    target_accept: float = 0.8,
    basis: str = "ml",
    progressbar: bool | None = None,
    hdi_prob: float = 0.95,
    compute_map: bool = True,
    jitter: float = 1.0,
    mass_matrix: str = "auto",
    parameterization: str = "u",
    backend: str = "numba",
    source=None,
) -> Estimate:
    """Sample the posterior with NUTS and summarize it (estimate_kind="mean").

    sampler: "pymc" (PyMC's NUTS, default) or "nutpie" (if installed). seed makes the run
    reproducible. basis: "ml" (whitened by the Laplace fit, default) or "qr". mass_matrix:
    "full" (dense adaptation), "diag", or "auto" (dense when every random-effect term is scalar
    and there are at most FULL_MASS_MAX unconstrained parameters, diagonal otherwise). The priors
    are resolved (defaults in docs/priors.md), stored in ``fit.sampler.priors`` and printed on
    interactive use. source: the ML Fit the chains start from (the method table supplies the
    Laplace fit); None starts from the prior. parameterization: for a non-normal random
    effect, sample u as declared ("u") or w = h(u) ("w"): the same posterior for β, different MAPs.
    """
    if sampler == "nutpie":
        try:
            import nutpie  # noqa: F401
        except ImportError as e:
            raise SpecError("sampler='nutpie' needs the optional nutpie package (pip install nutpie)") from e
    interactive = _interactive()
    progressbar = interactive if progressbar is None else progressbar
    cores = min(2, chains) if cores is None else cores
    rng = np.random.default_rng(seed)
    pri = priors if isinstance(priors, Priors) else resolve_priors(
        design, priors if priors is not None else design.spec.priors)
    if interactive:
        print(pri)
    ml = source if _usable_start(source) else None
    with compile_mode(backend):
        model, info, bas = _model(design, pri, ml, basis, parameterization)
        initvals, start_pt = None, None
        if ml is not None:
            start_pt = (_start_point(design, ml, pri) if design.spec.re_dist is None
                        else _nonnormal_start(design, ml, pri, parameterization))
            if bas.kind == "qr" and design.p:
                start_pt["beta_z"] = np.linalg.solve(bas.B, ml.beta_hat - bas.shift)
            initvals = [_jitter(design, start_pt, ml, rng, bas.kind, jitter) for _ in range(chains)]
        t_sample = time.perf_counter()
        kw: dict[str, Any] = dict(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                                  progressbar=progressbar, compute_convergence_checks=False,
                                  idata_kwargs={"log_likelihood": False})
        with model:
            if sampler == "pymc":
                idata, map_pt, map_msg = _nuts(model, info, design, start_pt, initvals, kw, target_accept,
                                               mass_matrix, compute_map)
            else:
                idata, map_pt, map_msg = pm_sample_nutpie(kw, target_accept), None, None
            if "log_likelihood" not in idata.groups():
                idata.add_groups(log_likelihood=pointwise_loglik(design, idata))
        sample_seconds = time.perf_counter() - t_sample
        settings = {"sampler": sampler, "draws": draws, "tune": tune, "chains": chains, "seed": seed,
                    "target_accept": target_accept, "basis": bas.kind, "hdi_prob": hdi_prob,
                    "mass_matrix": mass_matrix, "parameterization": parameterization, "backend": backend,
                    "start": ("the ML fit" if ml is not None else "the prior" if source is None else
                              "the prior: the ML fit did not converge or has no finite maximum "
                              "(separation, a constant response)"),
                    "ml_start": None if ml is None else {"beta": ml.beta_hat, "theta": ml.theta_hat,
                                                         "loglik": ml.loglik, "messages": tuple(ml.messages)},
                    "varcorr_estimate": "posterior means of the sds and correlations (theta_hat = chol of "
                                        "the covariance built from them), not the mean of the covariance"}
        return _estimate(design, idata, pri, settings, map_pt, map_msg, ml, hdi_prob, sample_seconds, model)


def compile_mode(backend: str):
    """PyTensor's compilation mode for everything the sampler compiles (the log density and its
    gradient, the MAP, the pointwise log-likelihood, the deterministics)."""
    if backend == "c":  # PyTensor's configured default (C)
        return contextlib.nullcontext()
    import pytensor

    return pytensor.config.change_flags(mode="NUMBA")


def pm_sample_nutpie(kw, target_accept):
    import pymc as pm

    return pm.sample(nuts_sampler="nutpie", target_accept=target_accept, **kw)


def _model(design: Design, pri: Priors, ml, basis: str, parameterization: str):
    """The PyMC model with its fixed-effect basis: whitened by the ML covariance when there is
    one (β = β̂ + chol(V̂) z), the QR basis of the centred X otherwise."""
    from ..pymc_model import Basis, build_model, ml_basis, qr_basis
    from ..priors import centering_matrix

    bas = None
    if basis == "ml" and ml is not None and design.p:
        bas = ml_basis(ml.beta_hat, ml.vcov_beta)
    if bas is None:
        bas = qr_basis(design, centering_matrix(design, pri))
        if design.p and ml is not None:
            bas = Basis(np.zeros(design.p), bas.B, "qr")
    model, info = build_model(design, pri, bas, parameterization)
    return model, info, bas


def _nuts(model, info, design: Design, start_pt, initvals, kw, target_accept, mass_matrix, compute_map):
    """PyMC's NUTS with one compiled log-density (and gradient) shared by the MAP and the sampler."""
    import pymc as pm

    vg = model.logp_dlogp_function(ravel_inputs=True)
    vg.set_extra_values({})
    map_pt, map_msg = None, None
    if compute_map and start_pt is not None:
        map_pt, map_msg = find_map(model, vg, start_pt, info)
    vg.trust_input = True
    potential = None
    ip = model.initial_point()
    x0 = np.concatenate([np.ravel(ip[v.name]) for v in model.continuous_value_vars])
    scalar_terms = design.spec.re_dist is not None or all(t.k == 1 for t in design.terms)
    # the dense metric sent the chains far off on grouseticks' 118 broods (124 parameters;
    # R-hat 1.8-3.0 with tune 1000 and 2500, Poisson and NB2) where the diagonal one converges;
    # its 63 locations (68 parameters) and Contraception's 60 districts were fine with it
    if mass_matrix == "full" or (mass_matrix == "auto" and scalar_terms and len(x0) <= FULL_MASS_MAX):
        # a dense mass matrix learns the correlation of each random effect with its sd
        # (strong where groups are informative): it made R-hat reliably <= 1.01 on
        # Contraception where the diagonal one failed for about one seed in ten. With an
        # LKJ term (sleepstudy (Days | Subject)) it did worse than the diagonal one
        # (lower ESS, divergences), so "auto" keeps the diagonal one there
        from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*QuadPotentialFullAdapt is an experimental.*")
            potential = QuadPotentialFullAdapt(len(x0), x0)
    step = pm.NUTS(logp_dlogp_func=vg, target_accept=target_accept, potential=potential)
    idata = pm.sample(step=step, initvals=initvals, **kw)
    return idata, map_pt, map_msg


def _estimate(design: Design, idata, pri, settings, map_pt, map_msg, ml, hdi_prob, seconds, model) -> Estimate:
    """Posterior means as the point estimates; the draws, summary and diagnostics as the report."""
    diag = diagnostics(idata, _checked_variables(design, idata, settings), settings["chains"])
    if design.p:
        Bd = posterior_draws(idata, "beta")
        beta_hat, vcov = Bd.mean(axis=0), np.atleast_2d(np.cov(Bd, rowvar=False))
    else:
        beta_hat, vcov = np.zeros(0), np.zeros((0, 0))
    phi = _posterior_phi(design, idata)
    summary = summary_rows(design, idata, hdi_prob, diag.per_parameter, map_pt, ml)
    if map_pt is not None:
        mp = MAPEstimate(MAP_PARAMETERIZATION, pd.Series(map_pt.get("beta", np.zeros(0)),
                                                         index=list(design.fixef_names)), map_pt, map_msg)
    else:
        mp = MAPEstimate(MAP_PARAMETERIZATION, error=map_msg)
    idata = public_first(design, idata)
    report = SamplerReport(idata=idata, summary=summary, diagnostics=diag, map=mp, priors=pri,
                           settings=settings, seconds=seconds, model=model)
    if design.spec.re_dist is not None:
        return _nonnormal_estimate(design, idata, beta_hat, vcov, phi, report)
    re_scale = design.family.re_scale(phi)
    theta_hat = _posterior_theta(design, idata, re_scale)
    u, u_condvar = posterior_re(design, idata, theta_hat, re_scale)
    return Estimate(method="hmc", estimate_kind="mean", beta=beta_hat, vcov_beta=vcov, theta=theta_hat,
                    phi=phi, u=u, u_condvar=u_condvar, sampler=report)


def _checked_variables(design: Design, idata, settings) -> list[str]:
    """The sampled quantities whose R-hat and ESS decide convergence."""
    names = ["beta"] if design.p else []
    if design.spec.re_dist is None:
        names += [f"sd_{t.group_name}" for t in design.terms]
        names += [f"cor_{t.group_name}" for t in design.terms if t.k > 1]
        names += [f"u_{t.group_name}" for t in design.terms]
    else:
        from ..pymc_model import nonnormal_variable

        names += [f"re_{nm}" for nm in design.spec.re_dist.estimated]
        names.append(nonnormal_variable(design, settings["parameterization"]))
    return names + [nm for nm in DISPERSION_NAMES if nm in idata.posterior]


def _nonnormal_estimate(design: Design, idata, beta_hat, vcov, phi, report) -> Estimate:
    """Posterior means of β, of the estimated random-effect parameters and of b = h(u)."""
    re = design.spec.re_dist
    g = design.terms[0].group_name
    params = dict(re.known)
    for nm in re.estimated:
        params[nm] = float(posterior_draws(idata, f"re_{nm}").mean())
    B = posterior_draws(idata, f"b_{g}")  # (S, m, 1)
    return Estimate(method="hmc", estimate_kind="mean", beta=beta_hat, vcov_beta=vcov, theta=np.zeros(0),
                    phi=phi, u=None, u_condvar=None, ranef=(B.mean(axis=0),),
                    ranef_condvar=(B.var(axis=0, ddof=1)[:, :, None],), re_params=params, sampler=report)


def _posterior_phi(design: Design, idata) -> float:
    disp = design.family.dispersion
    if disp is not None and disp.name in idata.posterior:
        return float(disp.from_param(float(posterior_draws(idata, disp.name).mean())))
    return design.fixed_phi


def _posterior_theta(design: Design, idata, re_scale: float) -> np.ndarray:
    """θ from the posterior means of the sds and correlations."""
    thetas = []
    for t in design.terms:
        g = t.group_name
        sd = posterior_draws(idata, f"sd_{g}").mean(axis=0)
        R = posterior_draws(idata, f"cor_{g}").mean(axis=0) if t.k > 1 else np.eye(1)
        T = np.linalg.cholesky(np.outer(sd, sd) * R) / math.sqrt(re_scale)
        cols, rws = np.triu_indices(t.k)
        thetas.append(T[rws, cols])
    return np.concatenate(thetas)


OPTIONS = (
    Option("draws", 1000, integer(1), "draws per chain after tuning"),
    Option("tune", 1000, integer(0), "tuning steps per chain"),
    Option("chains", 4, integer(1), "chains"),
    Option("seed", None, optional(integer(0)), "random seed"),
    Option("sampler", "pymc", choice("pymc", "nutpie"), "PyMC's NUTS or nutpie"),
    Option("priors", None, anything, "prior overrides (docs/priors.md)"),
    Option("cores", None, optional(integer(1)), "processes for the chains"),
    Option("target_accept", 0.8, number(0.0, open_low=True, high=1.0), "NUTS target acceptance"),
    Option("basis", "ml", choice("ml", "qr"), "fixed-effect basis"),
    Option("progressbar", None, optional(boolean), "show PyMC's progress bar"),
    Option("hdi_prob", 0.95, number(0.0, open_low=True, high=1.0), "HDI mass"),
    Option("compute_map", True, boolean, "also find the MAP"),
    Option("jitter", 1.0, number(0.0), "start jitter in posterior sds"),
    Option("mass_matrix", "auto", choice("auto", "full", "diag"), "NUTS mass matrix adaptation"),
    Option("parameterization", "u", choice("u", "w"), "non-normal random effects: sample u or w = h(u)"),
    Option("backend", "numba", choice("numba", "c"), "PyTensor compilation of the model for PyMC's NUTS"),
)
