"""Text summaries that read like lme4's `summary(fit)`."""

from __future__ import annotations

from scipy import stats

_TITLES = {
    "laplace": "Maximum likelihood (Laplace Approximation)",
    "nagq0": "Maximum likelihood (nAGQ = 0: fixed effects from PIRLS)",
    "agq": "Maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = {nAGQ})",
    "lmm": "Linear mixed model fit by {crit}",
    "pql": "Penalized quasi-likelihood (PQL)",
    "joint": "Joint maximization over fixed and random effects (h-likelihood mode)",
    "hmc": "Bayesian posterior by NUTS (posterior means)",
    "glmm_reml": "Restricted maximum likelihood (Laplace Approximation; fixed effects integrated out)",
}


def fit_summary(fit) -> str:
    d = fit.design
    fam = d.family
    key = "lmm" if fam.is_lmm and fit.method in ("laplace", "lmm") else fit.method
    if fit.likelihood == "reml" and not fam.is_lmm:
        key = "glmm_reml"
    title = _TITLES.get(key, fit.method).format(
        nAGQ=fit.nAGQ, crit="REML" if fit.reml_criterion is not None else "maximum likelihood"
    )
    lines = [title, f" Family: {fam.name}  ( {fam.link.name} )", f"Formula: {d.spec.formula}"]
    if hasattr(fit.details, "describe"):
        lines.append(f"Laplace: {fit.details.describe()}")
    if d.n_omitted:
        lines.append(f"  ({d.n_omitted} rows with missing values omitted)")
    lines.append("")
    if fit.reml_criterion is not None:
        lines.append(f"REML criterion at convergence: {fit.reml_criterion:.4f}")
    elif fit.loglik is not None:
        lines.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'-2logLik':>10} {'df.resid':>9}")
        lines.append(
            f"{fit.aic:10.4f} {fit.bic:10.4f} {fit.loglik:10.4f} {-2 * fit.loglik:10.4f} {fit.df_resid:9d}"
        )
    elif fit.method == "pql":
        lines.append("(no likelihood: PQL maximizes a quasi-likelihood)")
    elif fit.method == "joint":
        jl = getattr(fit.details, "joint_loglik", None)
        extra = f": joint log-density at the mode {jl:.4f}" if jl is not None else ""
        lines.append(f"(no marginal likelihood: joint mode over (beta, u){extra})")
    elif fit.method == "hmc":
        lines.append("(posterior summaries: point estimates are posterior means, errors posterior sds)")
    else:
        lines.append("(no likelihood reported by this method)")
    lines += ["", "Random effects:"]
    vc = fit.varcorr
    lines.append(f" {'Groups':<12} {'Name':<14} {'Variance':>10} {'Std.Dev.':>10} {'Corr':>6}")
    for grp in dict.fromkeys(vc["grp"]):
        sub = vc[vc["grp"] == grp]
        var = sub[sub["var2"].isna()]
        cors = sub[sub["var2"].notna()]
        first = True
        for _, r in var.iterrows():
            has_name = isinstance(r["var1"], str)
            name = r["var1"] if has_name else ""
            corr = ""
            if has_name:
                cs = cors[cors["var2"] == r["var1"]]["sdcor"].to_numpy()
                corr = " ".join(f"{c:6.3f}" for c in cs)
            lines.append(f" {grp if first else '':<12} {name:<14} {r['vcov']:10.4g} {r['sdcor']:10.4g} {corr}")
            first = False
    ng = ", ".join(f"{k}, {v}" for k, v in d.ngrps.items())
    lines.append(f"Number of obs: {d.n}, groups:  {ng}")
    lines += ["", "Fixed effects:"]
    est = fit.fixef
    se = fit.se
    if fit.sampler is not None:
        lines[-1] = "Posterior (fixed effects and variance parameters):"
        lines += posterior_table(fit)
    elif fam.has_dispersion and fam.is_lmm:
        lines.append(f"{'':<16} {'Estimate':>10} {'Std. Error':>10} {'t value':>8}")
        for nm in est.index:
            lines.append(f"{nm:<16} {est[nm]:10.5g} {se[nm]:10.5g} {est[nm] / se[nm]:8.3f}")
    else:
        lines.append(f"{'':<16} {'Estimate':>10} {'Std. Error':>10} {'z value':>8} {'Pr(>|z|)':>9}")
        for nm in est.index:
            z = est[nm] / se[nm]
            pval = 2 * stats.norm.sf(abs(z))
            lines.append(f"{nm:<16} {est[nm]:10.5g} {se[nm]:10.5g} {z:8.3f} {pval:9.3g}")
    if d.dropped:
        lines.append(f"fixed-effect model matrix is rank deficient: dropped {', '.join(d.dropped)}")
    if fit.messages:
        lines += [""] + [m for m in fit.messages]
    return "\n".join(lines)



def posterior_table(fit, prob: float = 0.95) -> list[str]:
    """Posterior mean, sd, equal-tailed and HDI intervals, bulk ESS and R-hat of the fixed
    effects and variance parameters of an hmc fit (no z or p: they are not posterior quantities)."""
    import arviz as az
    import numpy as np

    post = fit.idata.posterior
    names = [v for v in post.data_vars if not v.startswith("b_")]
    a = (1 - prob) / 2
    width = max(len(lab) for v in names for lab in _labels(post[v], [d for d in post[v].dims
                                                                     if d not in ("chain", "draw")]))
    lo, hi = f"{100 * a:g}%", f"{100 * (1 - a):g}%"
    head = (f"{'':<{width}} {'Mean':>9} {'SD':>8} {lo:>9} {hi:>9} {'HDI low':>9} {'HDI high':>9} "
            f"{'ESS':>6} {'R-hat':>6}")
    out = [head]
    ess = az.ess(post, var_names=names, method="bulk")
    rhat = az.rhat(post, var_names=names)
    hdi = az.hdi(post, var_names=names, hdi_prob=prob)
    for v in names:
        da = post[v]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        stacked = da.stack(_s=("chain", "draw")).transpose(*extra, "_s")
        vals = stacked.values.reshape(-1, stacked.shape[-1])
        labels = _labels(da, extra)
        e = np.ravel(ess[v].values)
        r = np.ravel(rhat[v].values)
        h = hdi[v].values.reshape(-1, 2)
        keep = range(len(labels))
        if v.startswith("cor_"):  # the strict lower triangle of the correlation matrix
            k = da.shape[-1]
            keep = [r * k + c for r in range(k) for c in range(r)]
        for i in keep:
            x, lab = vals[i], labels[i]
            q = np.quantile(x, [a, 1 - a])
            out.append(f"{lab:<{width}} {x.mean():9.4g} {x.std(ddof=1):8.3g} {q[0]:9.4g} {q[1]:9.4g} "
                       f"{h[i, 0]:9.4g} {h[i, 1]:9.4g} {e[i]:6.0f} {r[i]:6.3f}")
    out.append(f"(equal-tailed {lo}-{hi} intervals are invariant to reparameterization; HDIs are not)")
    return out


def _labels(da, dims) -> list[str]:
    import itertools

    if not dims:
        return [da.name]
    coords = [list(map(str, da[d].values)) for d in dims]
    return [f"{da.name}[{', '.join(c)}]" for c in itertools.product(*coords)]
