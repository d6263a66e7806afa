"""Posterior summaries of a sampled fit: convergence diagnostics (R-hat, ESS, divergences,
E-BFMI), the summary table (mean, median, sd, HDI, MAP, ML), posterior random effects and the
MAP in the sampler's own coordinates. Written for `methods.hmc`; reads ArviZ InferenceData.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .estimate import Diagnostics

RHAT_MAX = 1.01
ESS_BULK_MIN = 400  # and 100 per chain
ESS_PER_CHAIN_MIN = 100
BFMI_MIN = 0.3
MAP_PARAMETERIZATION = (
    "MAP in the sampler's unconstrained space: the mode of the density NUTS samples (log-Jacobians "
    "included) over the fixed-effect basis z (beta = shift + B z, a linear map), log sd (log of the "
    "Cholesky diagonal for vector terms, LKJ), log sigma / log shape, and the non-centred spherical "
    "u (b = Lambda u, u ~ N(0, I)); values reported back as beta, sd, cor, u. Not the mode in "
    "(beta, theta) after integrating u out, and not invariant to this parameterization"
)


def find_map(model, vg, start: dict, info) -> tuple[dict | None, str | None]:
    """The mode of the sampler's own target density (unconstrained space, log-Jacobian included),
    by L-BFGS from the ML point, mapped back to (beta, sd, cor, u, sigma/shape)."""
    import pymc as pm
    from pymc.blocking import DictToArrayBijection, RaveledVars
    from scipy.optimize import minimize

    try:
        fn = pm.initial_point.make_initial_point_fn(model=model, overrides=start, jitter_rvs=set(),
                                                    return_transformed=True)
        pt0 = fn(0)
        x0 = DictToArrayBijection.map({v.name: pt0[v.name] for v in model.continuous_value_vars})

        def f(x):
            lp, g = vg(np.asarray(x, dtype=float))
            return (-float(lp), -np.asarray(g, float)) if np.isfinite(lp) else (np.inf, np.zeros_like(x))

        with np.errstate(all="ignore"):
            res = minimize(f, x0.data, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
        vals = DictToArrayBijection.rmap(RaveledVars(res.x, x0.point_map_info))
    except Exception as e:  # noqa: BLE001 -- the MAP is a by-product, not the result
        return None, f"MAP not found: {e}"
    out: dict[str, Any] = {"converged": bool(res.success), "logp": -float(res.fun)}
    d = info.design
    if d.p:
        out["beta_z"] = np.asarray(vals["beta_z"])
        out["beta"] = info.basis.shift + info.basis.B @ out["beta_z"]
    if d.spec.re_dist is not None:
        for nm in d.spec.re_dist.estimated:
            out[f"re_{nm}"] = float(np.exp(vals[f"re_{nm}_log__"]))
        for k, v in vals.items():
            if k.startswith("log_"):
                out[k] = np.asarray(v)
    for t in (d.terms if d.spec.re_dist is None else ()):
        g = t.group_name
        out[f"u_{g}"] = np.asarray(vals[f"u_{g}"])
        if t.k == 1:
            out[f"sd_{g}"] = np.exp(np.asarray(vals[f"sd_{g}_log__"]))
        else:
            packed = np.asarray(vals[f"chol_{g}_cholesky-cov-packed__"], float).copy()
            L = np.zeros((t.k, t.k))
            L[np.tril_indices(t.k)] = packed
            L[np.diag_indices(t.k)] = np.exp(np.diag(L))
            sd = np.sqrt(np.sum(L * L, axis=1))
            out[f"chol_{g}"] = L
            out[f"sd_{g}"] = sd
            out[f"cor_{g}"] = (L @ L.T) / np.outer(sd, sd)
    disp = d.family.dispersion
    if disp is not None and f"{disp.name}_log__" in vals:
        out[disp.name] = float(np.exp(vals[f"{disp.name}_log__"]))
    return out, None if res.success else f"MAP optimizer: {res.message}"


# ------------------------------------------------------------------------ diagnostics


def draws(idata, name) -> np.ndarray:
    """(chains*draws, ...) array of a posterior variable."""
    a = idata.posterior[name].values
    return a.reshape((-1,) + a.shape[2:])


def flat_labels(da) -> list[str]:
    """'name[level, coef]' labels of a DataArray's non-sample entries in C order."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [da.name]
    idx = pd.MultiIndex.from_product([list(map(str, da[d].values)) for d in dims])
    return [f"{da.name}[{', '.join(t)}]" for t in idx]


def diagnostics(idata, var_names: list[str], chains: int) -> Diagnostics:
    """The convergence numbers of a run, with messages naming the parameters that fail."""
    import arviz as az

    msgs: list[str] = []
    ok = True
    ndraws = idata.posterior.sizes["draw"]
    rhat = az.rhat(idata, var_names=var_names)
    ess_b = az.ess(idata, var_names=var_names, method="bulk")
    ess_t = az.ess(idata, var_names=var_names, method="tail")
    bulk_min = max(ESS_BULK_MIN, ESS_PER_CHAIN_MIN * chains)
    tail_min = ESS_PER_CHAIN_MIN * chains
    worst_r, worst_b, worst_t = [], [], []
    table = {}
    for v in var_names:
        labels = flat_labels(idata.posterior[v])
        r = np.ravel(rhat[v].values)
        b = np.ravel(ess_b[v].values)
        t = np.ravel(ess_t[v].values)
        const = np.ravel(idata.posterior[v].std(("chain", "draw")).values) == 0  # e.g. cor diagonals
        for lab, ri, bi, ti, c in zip(labels, r, b, t, const):
            if c:
                continue
            table[lab] = (ri, bi, ti)
            if not ri <= RHAT_MAX:
                worst_r.append((ri, lab))
            if not bi >= bulk_min:
                worst_b.append((bi, lab))
            if not ti >= tail_min:
                worst_t.append((ti, lab))

    def show(items, rev):
        items = sorted(items, key=lambda x: (np.nan_to_num(x[0], nan=np.inf if rev else -np.inf)), reverse=rev)
        head = ", ".join(f"{lab} ({val:.4g})" for val, lab in items[:5])
        return head + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    if worst_r:
        ok = False
        msgs.append(f"R-hat > {RHAT_MAX} for {len(worst_r)} parameters: {show(worst_r, True)}")
    if worst_b:
        ok = False
        msgs.append(f"bulk ESS < {bulk_min} for {len(worst_b)} parameters: {show(worst_b, False)}")
    if worst_t:
        ok = False
        msgs.append(f"tail ESS < {tail_min} for {len(worst_t)} parameters: {show(worst_t, False)}")
    ss = idata.sample_stats
    ndiv = int(ss["diverging"].sum()) if "diverging" in ss else 0
    if ndiv:
        ok = False
        msgs.append(f"{ndiv} divergent transitions after tuning (of {ndraws * chains}); "
                    "the posterior summaries may be biased: refit with a higher target_accept "
                    "(e.g. 0.95: smaller steps)")
    ntree = 0
    for key in ("reached_max_treedepth", "maxdepth_reached"):
        if key in ss:
            ntree = int(ss[key].sum())
    if ntree:
        msgs.append(f"{ntree} transitions hit the maximum tree depth (efficiency, not validity)")
    bfmi = np.array([np.nan])
    if "energy" in ss:
        import arviz as az

        bfmi = np.atleast_1d(az.bfmi(idata))
        if np.any(bfmi < BFMI_MIN):
            ok = False
            msgs.append(f"E-BFMI < {BFMI_MIN} in chains {list(np.flatnonzero(bfmi < BFMI_MIN))} "
                        f"({', '.join(f'{x:.2f}' for x in bfmi)})")
    if not ok:
        msgs.insert(0, "HMC did not pass its convergence checks: the posterior summaries are unreliable")
    r_all = np.array([v[0] for v in table.values()])
    b_all = np.array([v[1] for v in table.values()])
    t_all = np.array([v[2] for v in table.values()])
    return Diagnostics(
        max_rhat=float(np.nanmax(r_all)) if r_all.size else np.nan,
        min_ess_bulk=float(np.nanmin(b_all)) if b_all.size else np.nan,
        min_ess_tail=float(np.nanmin(t_all)) if t_all.size else np.nan,
        divergences=ndiv,
        max_treedepth_hits=ntree,
        bfmi=tuple(bfmi.tolist()),
        thresholds={"rhat": RHAT_MAX, "ess_bulk": bulk_min, "ess_tail": tail_min, "bfmi": BFMI_MIN},
        per_parameter=pd.DataFrame.from_dict(table, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"]),
        messages=tuple(msgs),
        passed=ok,
    )


# ------------------------------------------------------------------------ summaries


def summary_rows(design, idata, hdi_prob: float, diag: pd.DataFrame, map_pt, ml):
    import arviz as az

    rows = []

    def add(quantity, term, group, draws, label, mapv=None, mlv=None):
        lo, hi = az.hdi(np.asarray(draws, float), hdi_prob=hdi_prob)
        # equal-tailed: the same interval whatever the scale (HDIs are not invariant)
        qlo, qhi = np.quantile(np.asarray(draws, float), [(1 - hdi_prob) / 2, (1 + hdi_prob) / 2])
        r = diag.loc[label] if label in diag.index else pd.Series({"r_hat": np.nan, "ess_bulk": np.nan, "ess_tail": np.nan})
        rows.append((quantity, term, group, float(np.mean(draws)), float(np.median(draws)), float(np.std(draws, ddof=1)),
                     float(lo), float(hi), float(qlo), float(qhi), r["r_hat"], r["ess_bulk"], r["ess_tail"],
                     np.nan if mapv is None else float(mapv), np.nan if mlv is None else float(mlv)))

    if design.p:
        B = draws(idata, "beta")
        mlb = None if ml is None else ml.beta_hat
        for j, nm in enumerate(design.fixef_names):
            add("fixef", nm, None, B[:, j], f"beta[{nm}]",
                None if map_pt is None else map_pt["beta"][j], None if mlb is None else mlb[j])
    if design.spec.re_dist is not None:
        for nm in design.spec.re_dist.estimated:
            add("re_param", nm, design.terms[0].group_name, draws(idata, f"re_{nm}"), f"re_{nm}",
                None if map_pt is None else map_pt.get(f"re_{nm}"), None if ml is None else ml.re_params[nm])
    ml_vc = None if ml is None or design.spec.re_dist is not None else ml.varcorr
    for t in (design.terms if design.spec.re_dist is None else ()):
        g = t.group_name
        S = draws(idata, f"sd_{g}")
        for j, c in enumerate(t.coef_names):
            mlv = None
            if ml_vc is not None:
                sel = ml_vc[(ml_vc.grp == g) & (ml_vc.var1 == c) & ml_vc.var2.isna()]
                mlv = sel.sdcor.iloc[0] if len(sel) else None
            add("sd", c, g, S[:, j], f"sd_{g}[{c}]",
                None if map_pt is None else np.ravel(map_pt[f"sd_{g}"])[j], mlv)
        if t.k > 1:
            R = draws(idata, f"cor_{g}")
            for a in range(t.k):
                for b in range(a + 1, t.k):
                    c1, c2 = t.coef_names[a], t.coef_names[b]
                    mlv = None
                    if ml_vc is not None:
                        sel = ml_vc[(ml_vc.grp == g) & (ml_vc.var1 == c1) & (ml_vc.var2 == c2)]
                        mlv = sel.sdcor.iloc[0] if len(sel) else None
                    add("cor", f"{c1}.{c2}", g, R[:, b, a], f"cor_{g}[{c2}, {c1}]",
                        None if map_pt is None else map_pt[f"cor_{g}"][b, a], mlv)
    disp = design.family.dispersion
    if disp is not None and disp.name in idata.posterior:
        nm = disp.name
        mlv = None if ml is None else disp.to_param(ml.phi)
        add(nm, nm, None, draws(idata, nm), nm, None if map_pt is None else map_pt[nm], mlv)
    return pd.DataFrame(rows, columns=["quantity", "term", "group", "mean", "median", "sd",
                                       "lower", "upper", "eti_lower", "eti_upper", "r_hat", "ess_bulk", "ess_tail", "map", "ml"])


def posterior_re(design, idata, theta, re_scale):
    """u, u_condvar such that Fit.ranef / ranef_condvar are the posterior means / covariances of b."""
    s = design.structure
    us, cvs = [], []
    for t, T in zip(design.terms, s.lambdas(theta)):
        Bd = draws(idata, f"b_{t.group_name}")  # (S, m, k)
        mean = Bd.mean(axis=0)
        dev = Bd - mean
        cov = np.einsum("smi,smj->mij", dev, dev) / (Bd.shape[0] - 1)
        Tinv = np.linalg.inv(T)
        us.append((mean @ Tinv.T).ravel())
        cvs.append(np.einsum("ij,mjk,lk->mil", Tinv, cov, Tinv) / re_scale)
    return np.concatenate(us) if us else np.zeros(0), tuple(cvs)


def predictor_draws(design, post, sl: slice = slice(None)):
    """(η, φ) at the posterior draws, flattened over (chain, draw) and cut to `sl`: η =
    offset + Xβ + Σ_t Z_t b_t, shape (S, n), and φ from the draws of the dispersion, shape
    (S,), or None where the family's φ is fixed (`design.fixed_phi`)."""
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    eta = np.repeat(design.offset[None, :], len(range(nc * nd)[sl]), axis=0)
    if design.p:
        eta += post["beta"].values.reshape(nc * nd, -1)[sl] @ design.X.T
    for t in design.terms:
        b = post[f"b_{t.group_name}"].values.reshape(nc * nd, t.nlevels, t.k)[sl]
        eta += np.einsum("snk,nk->sn", b[:, t.codes, :], t.X)
    disp = design.family.dispersion
    if disp is None or disp.name not in post:
        return eta, None
    return eta, disp.from_param(post[disp.name].values.reshape(-1)[sl])


def pointwise_loglik(design, idata):
    """ArviZ's log_likelihood group: log p(y_i | draw) for every draw and row (variable "y",
    dims chain, draw, obs), the family's numpy log density at each draw's η. The model's
    likelihood is built from the same family code (`pymc_model`), so this is its density,
    without a second PyTensor graph to compile and run per fit."""
    import xarray as xr

    post, n = idata.posterior, design.n
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    out = np.empty((n_chain * n_draw, n))
    step = max(1, 2_000_000 // max(n, 1))  # draws per block: bounded temporaries on large data
    for a in range(0, n_chain * n_draw, step):
        sl = slice(a, min(a + step, n_chain * n_draw))
        eta, phi = predictor_draws(design, post, sl)
        with np.errstate(all="ignore"):
            out[sl] = design.family.loglik(design.y, eta, design.wt,
                                           design.fixed_phi if phi is None else phi[:, None])
    return xr.Dataset({"y": (("chain", "draw", "obs"), out.reshape(n_chain, n_draw, n))},
                      coords={"chain": post["chain"].values, "draw": post["draw"].values,
                              "obs": [int(r) for r in design.rows]})


def posterior_summary(fit) -> pd.DataFrame:
    """The posterior summary table of an hmc fit (mean, median, sd, HDI `lower`/`upper`,
    equal-tailed `eti_lower`/`eti_upper` with the same mass, R-hat, ESS, MAP, ML);
    warns loudly when the fit failed its convergence checks."""
    import warnings

    from .errors import ConvergenceWarning, SpecError

    if fit.sampler is None:
        raise SpecError(f"posterior_summary needs a sampled fit (method='hmc'), got method={fit.method!r}")
    if not fit.converged:
        warnings.warn("posterior summary of a fit that FAILED its convergence checks: "
                      + "; ".join(fit.messages), ConvergenceWarning, stacklevel=2)
    return fit.posterior


def public_first(design, idata):
    """The draws with lme4-named, constrained quantities first in `posterior` (beta, sd_<g>,
    cor_<g>, the dispersion, a non-normal random effect's parameters, b_<g>) and the sampler's
    internal coordinates (the whitened beta_z, the spherical u_<g>, ...) moved to the
    `unconstrained_posterior` group, so that az.summary / az.plot_forest show the model's
    parameters. The same object, regrouped in place."""
    post = idata.posterior
    disp = design.family.dispersion
    order = ["beta"] + [f"sd_{t.group_name}" for t in design.terms] + [f"cor_{t.group_name}" for t in design.terms]
    order += [disp.name] if disp is not None else []
    order += sorted(v for v in post.data_vars if v.startswith("re_"))
    order += [f"b_{t.group_name}" for t in design.terms]
    public = [v for v in order if v in post.data_vars]
    internal = [v for v in post.data_vars if v not in public]
    if internal:
        idata.add_groups(unconstrained_posterior=post[internal])
    idata.posterior = post[public]
    return idata
