"""ArviZ InferenceData for every fit.

An hmc fit has its draws (lme4-named quantities in `posterior`, the sampler's internal
coordinates in `unconstrained_posterior`). Every other fit gets an honestly labelled stand-in:
draws from the normal approximation at its estimate, with the variance parameters on the scale
where a normal approximation is sensible (log sd, atanh cor, log σ; the covariance from the
Hessian of the deviance, by the delta method), transformed back, under the same variable names
as the hmc posterior (`beta`, `sd_<g>`, `cor_<g>`, the dispersion), so that `az.summary` and
`az.plot_forest([fit_laplace.idata, fit_hmc.idata])` line up. `attrs` say what the draws are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..posterior import predictor_draws
from . import params

APPROX_DRAWS = 1000
APPROX_CHAINS = 4


def hmc_idata(fit, posterior_predictive: bool = False, seed: int | None = None):
    """The hmc fit's draws; with `posterior_predictive`, a copy with y simulated per draw."""
    idata = fit.sampler.idata
    if not posterior_predictive:
        return idata
    out = idata.copy()
    out.add_groups(posterior_predictive=_predictive(fit, out.posterior, seed))
    return out


def _predictive(fit, post, seed):
    """y drawn from the likelihood at each posterior draw of (β, b, dispersion)."""
    import xarray as xr

    d = fit.design
    rng = np.random.default_rng(seed)
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    eta, phi = predictor_draws(d, post)
    if phi is None:
        phi = np.full(nc * nd, d.fixed_phi)
    counts = d.family.dist.binary_response and np.any(d.wt > 1)
    ys = np.empty_like(eta)
    for s in range(nc * nd):
        y = d.family.simulate(rng, eta[s], d.wt, float(phi[s]))
        ys[s] = np.round(y * d.wt) if counts else y
    obs = [int(r) for r in d.rows]
    return xr.Dataset({"y": (("chain", "draw", "obs"), ys.reshape(nc, nd, -1))},
                      coords={"chain": np.arange(nc), "draw": np.arange(nd), "obs": obs})


def _transforms(kinds: np.ndarray):
    """(to the normal scale, back, derivative of the forward map) per kind of parameter."""
    sd = kinds == "sd"

    # an sd at its bound 0 (a singular fit) maps to -inf and back to 0: a point mass, no warning
    def fwd(x):
        with np.errstate(divide="ignore"):
            return np.where(sd, np.log(np.where(sd, x, 1.0)), np.arctanh(np.clip(np.where(sd, 0.0, x), -1 + 1e-12, 1 - 1e-12)))

    def back(w):
        return np.where(sd, np.exp(w), np.tanh(w))

    def deriv(x):
        with np.errstate(divide="ignore"):
            return np.where(sd, 1.0 / np.where(sd, x, 1.0), 1.0 / (1.0 - np.clip(np.where(sd, 0.0, x), -1 + 1e-12, 1 - 1e-12) ** 2))

    return fwd, back, deriv


def _variance_covariance(fit):
    """(estimates of the variance parameters, their covariance with β or None, a note)."""
    nm = params.name_map(fit.design)
    var_hat = params.to_sdcor(fit.design, fit.theta_hat, fit.phi)
    p, nv = fit.design.p, len(nm)
    if fit.estimate_kind != "ml" or fit.loglik is None or fit.spec.reml or fit.spec.re_dist is not None:
        return var_hat, None, ("variance parameters held at their estimates (this method gives no "
                               "covariance for them)")
    from ..errors import SpecError
    from .profiler import Profiler

    try:
        prof = Profiler(fit)
    except SpecError as e:  # e.g. nAGQ = 0: no (θ, β) deviance to take a Hessian of
        return var_hat, None, f"variance parameters held at their estimates ({e})"
    C = np.zeros((nv + p, nv + p))
    if prof.lmm:  # β is profiled out: asymptotically independent of the variance parameters
        C[:nv, :nv] = prof.cov
        C[nv:, nv:] = fit.vcov_beta
    else:
        C = prof.cov
    return prof.psi_hat[:nv], C, "covariance from the Hessian of the deviance at the estimate"


def approximate_idata(fit, draws: int = APPROX_DRAWS, chains: int = APPROX_CHAINS, seed: int | None = 0):
    """InferenceData of draws from the normal approximation at a non-sampled fit's estimate."""
    import arviz as az

    d = fit.design
    nm = params.name_map(d)
    kinds = nm["kind"].to_numpy()
    nv, p = len(nm), d.p
    var_hat, C, note = _variance_covariance(fit)
    beta_hat = np.asarray(fit.beta_hat, float)
    rng = np.random.default_rng(seed)
    S = draws * chains
    fwd, back, deriv = _transforms(kinds)
    at_bound = (kinds == "sd") & (var_hat <= 0) | (kinds == "cor") & (np.abs(var_hat) >= 1)
    if C is None:
        beta_d = rng.multivariate_normal(beta_hat, fit.vcov_beta, size=S, method="cholesky") if p else np.zeros((S, 0))
        var_d = np.tile(var_hat, (S, 1))
    else:
        J = np.concatenate([np.where(at_bound, 0.0, deriv(var_hat)), np.ones(p)])
        V = J[:, None] * C * J[None, :]
        mean = np.concatenate([np.where(at_bound, 0.0, fwd(var_hat)), beta_hat])
        w = rng.multivariate_normal(mean, V, size=S, method="eigh")
        var_d = np.where(at_bound, var_hat, back(w[:, :nv]))
        beta_d = w[:, nv:]
    post = {}
    dims = {}
    coords = {"fixef": list(d.fixef_names)}
    if p:
        post["beta"] = beta_d.reshape(chains, draws, p)
        dims["beta"] = ["fixef"]
    names = list(nm.index)
    for t in d.terms:
        g = t.group_name
        coords[f"{g}_coef"] = list(t.coef_names)
        rows = nm[(nm["grp"] == g)]
        sd_cols = [names.index(r) for r in rows.index if rows.loc[r, "kind"] == "sd"]
        post[f"sd_{g}"] = var_d[:, sd_cols].reshape(chains, draws, t.k)
        dims[f"sd_{g}"] = [f"{g}_coef"]
        if t.k > 1:
            coords[f"{g}_coef2"] = list(t.coef_names)
            R = np.tile(np.eye(t.k), (S, 1, 1))
            for r in rows.index[rows["kind"] == "cor"]:
                i, j = t.coef_names.index(rows.loc[r, "var1"]), t.coef_names.index(rows.loc[r, "var2"])
                R[:, i, j] = R[:, j, i] = var_d[:, names.index(r)]
            post[f"cor_{g}"] = R.reshape(chains, draws, t.k, t.k)
            dims[f"cor_{g}"] = [f"{g}_coef", f"{g}_coef2"]
    disp = d.family.dispersion
    if disp is not None and params.has_sigma(d):
        phi = var_d[:, names.index(".sigma")] ** 2
        post[disp.name] = np.asarray(disp.to_param(phi), float).reshape(chains, draws)
    attrs = {
        "glmmbayes_method": fit.method,
        "estimate_kind": fit.estimate_kind,
        "draws_are": ("independent draws from the normal approximation at the estimate (not a "
                      "posterior, not MCMC): "
                      + ("beta, log sd, atanh cor and log sigma jointly normal, transformed back; "
                         if C is not None else "beta normal with covariance vcov; ") + note),
    }
    obs = pd.Index([int(r) for r in d.rows], name="obs")
    return az.from_dict(posterior=post, observed_data={"y": np.asarray(d.y)}, coords={**coords, "obs": list(obs)},
                        dims={**dims, "y": ["obs"]}, attrs=attrs)
