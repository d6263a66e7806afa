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
    if fam.has_dispersion and fam.is_lmm:
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

