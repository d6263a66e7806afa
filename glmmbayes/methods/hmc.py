"""method="hmc": the posterior by NUTS (PyMC's sampler by default, nutpie when chosen).

The model is `glmmbayes.pymc_model.build_model` of the same Design. Chains start from the
Laplace ML fit (β̂, θ̂ and the conditional modes ũ, jittered per chain by about one posterior sd),
and the fixed effects are sampled on the ML-whitened basis β = β̂ + chol(V̂) z (QR basis of the
centred X when the ML covariance is unusable). The Fit reports posterior means (β, sds,
correlations, random effects) and, in `optinfo`, medians, sds, HDIs, R-hat, ESS, divergences and
the MAP. R-hat > 1.01, bulk ESS < max(400, 100·chains), tail ESS < 100·chains, any divergence or an
E-BFMI < 0.3 make ``converged`` False with a message naming the parameters (and `glmmbayes.fit`
warns with a ConvergenceWarning).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..design import Design
from ..errors import ConvergenceWarning, SpecError
from ..fit import Fit
from ..priors import Priors, resolve_priors

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


def _interactive() -> bool:
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    try:
        return sys.stderr.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------------ starting values


def _start_point(design: Design, ml, priors: Priors) -> dict[str, np.ndarray]:
    """The ML point in the model's (constrained) variables; b = Λ ũ becomes u = L⁻¹ b."""
    pt: dict[str, np.ndarray] = {}
    if design.p:
        pt["beta_z"] = np.zeros(design.p)  # the ML basis is centred at β̂
    s = design.structure
    lam = s.lambdas(ml.theta_hat)
    re_scale = ml.phi if design.family.is_lmm else 1.0
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
    if "sigma" in priors.dispersion:
        pt["sigma"] = np.array(math.sqrt(ml.phi))
    if "shape" in priors.dispersion:
        pt["shape"] = np.array(1.0 / ml.phi)
    return pt


def _jitter(design: Design, start: dict, ml, rng: np.random.Generator, basis_kind: str, scale: float):
    """One chain's start: about `scale` posterior sds away from the ML point."""
    out = {}
    for k, v in start.items():
        v = np.asarray(v, float)
        if k == "beta_z":
            out[k] = v + scale * rng.standard_normal(v.shape) * (1.0 if basis_kind == "ml" else 0.1)
        elif k.startswith("u_"):
            out[k] = v + scale * 0.5 * rng.standard_normal(v.shape)
        elif k.startswith("sd_") or k in ("sigma", "shape"):
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


def _map(model, vg, start: dict, info) -> tuple[dict | None, str | None]:
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
    for t in d.terms:
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
    for nm in ("sigma", "shape"):
        if f"{nm}_log__" in vals:
            out[nm] = float(np.exp(vals[f"{nm}_log__"]))
    return out, None if res.success else f"MAP optimizer: {res.message}"


# ------------------------------------------------------------------------ diagnostics


def _draws(idata, name) -> np.ndarray:
    """(chains*draws, ...) array of a posterior variable."""
    a = idata.posterior[name].values
    return a.reshape((-1,) + a.shape[2:])


def _flat_labels(da) -> list[str]:
    """'name[level, coef]' labels of a DataArray's non-sample entries in C order."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [da.name]
    idx = pd.MultiIndex.from_product([list(map(str, da[d].values)) for d in dims])
    return [f"{da.name}[{', '.join(t)}]" for t in idx]


def diagnostics(idata, var_names: list[str], chains: int) -> tuple[list[str], bool, dict]:
    """Messages, converged flag and the numbers behind them."""
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
        labels = _flat_labels(idata.posterior[v])
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
                    "the posterior summaries may be biased")
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
    info = {
        "max_rhat": float(np.nanmax(r_all)) if r_all.size else np.nan,
        "min_ess_bulk": float(np.nanmin(b_all)) if b_all.size else np.nan,
        "min_ess_tail": float(np.nanmin(t_all)) if t_all.size else np.nan,
        "divergences": ndiv,
        "max_treedepth_hits": ntree,
        "bfmi": bfmi.tolist(),
        "thresholds": {"rhat": RHAT_MAX, "ess_bulk": bulk_min, "ess_tail": tail_min, "bfmi": BFMI_MIN},
        "per_parameter": pd.DataFrame.from_dict(table, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"]),
    }
    return msgs, ok, info


# ------------------------------------------------------------------------ summaries


def _summary_rows(design: Design, idata, hdi_prob: float, diag: pd.DataFrame, map_pt, ml):
    import arviz as az

    rows = []

    def add(quantity, term, group, draws, label, mapv=None, mlv=None):
        lo, hi = az.hdi(np.asarray(draws, float), hdi_prob=hdi_prob)
        r = diag.loc[label] if label in diag.index else pd.Series({"r_hat": np.nan, "ess_bulk": np.nan, "ess_tail": np.nan})
        rows.append((quantity, term, group, float(np.mean(draws)), float(np.median(draws)), float(np.std(draws, ddof=1)),
                     float(lo), float(hi), r["r_hat"], r["ess_bulk"], r["ess_tail"],
                     np.nan if mapv is None else float(mapv), np.nan if mlv is None else float(mlv)))

    if design.p:
        B = _draws(idata, "beta")
        mlb = None if ml is None else ml.beta_hat
        for j, nm in enumerate(design.fixef_names):
            add("fixef", nm, None, B[:, j], f"beta[{nm}]",
                None if map_pt is None else map_pt["beta"][j], None if mlb is None else mlb[j])
    ml_vc = None if ml is None else ml.varcorr
    for t in design.terms:
        g = t.group_name
        S = _draws(idata, f"sd_{g}")
        for j, c in enumerate(t.coef_names):
            mlv = None
            if ml_vc is not None:
                sel = ml_vc[(ml_vc.grp == g) & (ml_vc.var1 == c) & ml_vc.var2.isna()]
                mlv = sel.sdcor.iloc[0] if len(sel) else None
            add("sd", c, g, S[:, j], f"sd_{g}[{c}]",
                None if map_pt is None else np.ravel(map_pt[f"sd_{g}"])[j], mlv)
        if t.k > 1:
            R = _draws(idata, f"cor_{g}")
            for a in range(t.k):
                for b in range(a + 1, t.k):
                    c1, c2 = t.coef_names[a], t.coef_names[b]
                    mlv = None
                    if ml_vc is not None:
                        sel = ml_vc[(ml_vc.grp == g) & (ml_vc.var1 == c1) & (ml_vc.var2 == c2)]
                        mlv = sel.sdcor.iloc[0] if len(sel) else None
                    add("cor", f"{c1}.{c2}", g, R[:, b, a], f"cor_{g}[{c2}, {c1}]",
                        None if map_pt is None else map_pt[f"cor_{g}"][b, a], mlv)
    for nm in ("sigma", "shape"):
        if nm in idata.posterior:
            mlv = None if ml is None else (math.sqrt(ml.phi) if nm == "sigma" else 1.0 / ml.phi)
            add(nm, nm, None, _draws(idata, nm), nm, None if map_pt is None else map_pt[nm], mlv)
    return pd.DataFrame(rows, columns=["quantity", "term", "group", "mean", "median", "sd",
                                       "lower", "upper", "r_hat", "ess_bulk", "ess_tail", "map", "ml"])


def _posterior_re(design: Design, idata, theta, re_scale):
    """u, u_condvar such that Fit.ranef / ranef_condvar are the posterior means / covariances of b."""
    s = design.structure
    us, cvs = [], []
    for t, T in zip(design.terms, s.lambdas(theta)):
        Bd = _draws(idata, f"b_{t.group_name}")  # (S, m, k)
        mean = Bd.mean(axis=0)
        dev = Bd - mean
        cov = np.einsum("smi,smj->mij", dev, dev) / (Bd.shape[0] - 1)
        Tinv = np.linalg.inv(T)
        us.append((mean @ Tinv.T).ravel())
        cvs.append(np.einsum("ij,mjk,lk->mil", Tinv, cov, Tinv) / re_scale)
    return np.concatenate(us) if us else np.zeros(0), tuple(cvs)


def posterior_summary(fit: Fit) -> pd.DataFrame:
    """The posterior summary table of an hmc fit (mean, median, sd, HDI, R-hat, ESS, MAP, ML);
    warns loudly when the fit failed its convergence checks."""
    if fit.method != "hmc":
        raise SpecError(f"posterior_summary needs an hmc fit, got method={fit.method!r}")
    if not fit.converged:
        warnings.warn("posterior summary of a fit that FAILED its convergence checks: "
                      + "; ".join(fit.messages), ConvergenceWarning, stacklevel=2)
    return fit.optinfo["posterior_summary"]


# ------------------------------------------------------------------------ the method


FULL_MASS_MAX = 600  # unconstrained parameters up to which NUTS adapts a dense mass matrix


def fit(
    design: Design,
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
) -> Fit:
    """Sample the posterior with NUTS and summarize it as a Fit (estimate_kind="mean").

    sampler: "pymc" (PyMC's NUTS, default) or "nutpie" (if installed). seed makes the run
    reproducible. basis: "ml" (whitened by the Laplace fit, default) or "qr". mass_matrix:
    "full" (dense adaptation), "diag", or "auto" (dense when every random-effect term is scalar
    and there are at most FULL_MASS_MAX unconstrained parameters, diagonal otherwise). The priors are
    resolved (defaults in docs/priors.md), stored in ``fit.optinfo["priors"]`` and printed on
    interactive use.
    """
    import pymc as pm

    from ..pymc_model import build_model, ml_basis, qr_basis
    from ..priors import centering_matrix
    from . import laplace

    t0 = time.perf_counter()
    if sampler not in ("pymc", "nutpie"):
        raise SpecError(f"sampler must be 'pymc' or 'nutpie', got {sampler!r}")
    if sampler == "nutpie":
        try:
            import nutpie  # noqa: F401
        except ImportError as e:
            raise SpecError("sampler='nutpie' needs the optional nutpie package (pip install nutpie)") from e
    if mass_matrix not in ("auto", "full", "diag"):
        raise SpecError(f"mass_matrix must be 'auto', 'full' or 'diag', got {mass_matrix!r}")
    if basis not in ("ml", "qr"):
        raise SpecError(f"basis must be 'ml' or 'qr', got {basis!r}")
    for nm, v in (("draws", draws), ("tune", tune), ("chains", chains)):
        if not isinstance(v, (int, np.integer)) or v < (0 if nm == "tune" else 1):
            raise SpecError(f"{nm} must be a positive integer, got {v!r}")
    interactive = _interactive()
    progressbar = interactive if progressbar is None else progressbar
    cores = min(2, chains) if cores is None else cores
    rng = np.random.default_rng(seed)

    pri = priors if isinstance(priors, Priors) else resolve_priors(
        design, priors if priors is not None else design.spec.priors)
    if interactive:
        print(pri)

    # ---- the ML start (and the whitened basis)
    ml, ml_msgs = None, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ml = laplace.fit(design)
            ml_msgs = list(ml.messages)
        except Exception as e:  # noqa: BLE001 -- the sampler can still start from the prior
            ml_msgs = [f"Laplace start failed: {e}"]
    ml_msgs += [str(w.message) for w in caught if str(w.message) not in ml_msgs]
    C = centering_matrix(design, pri)
    bas = None
    if basis == "ml" and ml is not None and design.p:
        bas = ml_basis(ml.beta_hat, ml.vcov_beta)
    if bas is None:
        bas = qr_basis(design, C)
        if design.p and ml is not None:
            from ..pymc_model import Basis

            bas = Basis(np.zeros(design.p), bas.B, "qr")
    model, info = build_model(design, pri, bas)

    # ---- starting points: the ML point jittered per chain
    initvals = None
    start = None
    if ml is not None:
        start = _start_point(design, ml, pri)
        if bas.kind == "qr" and design.p:
            start["beta_z"] = np.linalg.solve(bas.B, ml.beta_hat - bas.shift)
        initvals = [_jitter(design, start, ml, rng, bas.kind, jitter) for _ in range(chains)]

    t_sample = time.perf_counter()
    kw: dict[str, Any] = dict(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                              progressbar=progressbar, compute_convergence_checks=False,
                              idata_kwargs={"log_likelihood": True})
    map_pt, map_msg = None, None
    with model:
        if sampler == "pymc":
            # one compiled log-density (with gradient) serves the MAP and NUTS
            vg = model.logp_dlogp_function(ravel_inputs=True)
            vg.set_extra_values({})
            if compute_map and start is not None:
                map_pt, map_msg = _map(model, vg, start, info)
            vg.trust_input = True
            potential = None
            ip = model.initial_point()
            x0 = np.concatenate([np.ravel(ip[v.name]) for v in model.continuous_value_vars])
            scalar_terms = all(t.k == 1 for t in design.terms)
            if mass_matrix == "full" or (mass_matrix == "auto" and scalar_terms and len(x0) <= FULL_MASS_MAX):
                # a dense mass matrix learns the correlation of each random effect with its sd
                # (strong where groups are informative): it made R-hat reliably <= 1.01 on
                # Contraception where the diagonal one failed for about one seed in ten. With an
                # LKJ term (sleepstudy (Days | Subject)) it did worse than the diagonal one
                # (lower ESS, divergences), so "auto" keeps the diagonal one there
                from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt

                potential = QuadPotentialFullAdapt(len(x0), x0)
            step = pm.NUTS(logp_dlogp_func=vg, target_accept=target_accept, potential=potential)
            idata = pm.sample(step=step, initvals=initvals, **kw)
        else:
            idata = pm.sample(nuts_sampler="nutpie", target_accept=target_accept, **kw)
        if "log_likelihood" not in idata.groups():
            pm.compute_log_likelihood(idata, progressbar=False)
    sample_seconds = time.perf_counter() - t_sample

    # ---- diagnostics
    var_names = (["beta"] if design.p else []) + [f"sd_{t.group_name}" for t in design.terms]
    var_names += [f"cor_{t.group_name}" for t in design.terms if t.k > 1]
    var_names += [f"u_{t.group_name}" for t in design.terms]
    var_names += [nm for nm in ("sigma", "shape") if nm in idata.posterior]
    msgs, ok, diag = diagnostics(idata, var_names, chains)

    # ---- point estimates: posterior means
    p = design.p
    if p:
        Bd = _draws(idata, "beta")
        beta_hat = Bd.mean(axis=0)
        vcov = np.atleast_2d(np.cov(Bd, rowvar=False))
    else:
        beta_hat, vcov = np.zeros(0), np.zeros((0, 0))
    if "sigma" in idata.posterior:
        phi = float(_draws(idata, "sigma").mean()) ** 2
    elif "shape" in idata.posterior:
        phi = 1.0 / float(_draws(idata, "shape").mean())
    else:
        phi = 1.0
    re_scale = phi if design.family.is_lmm else 1.0
    thetas = []
    for t in design.terms:
        g = t.group_name
        sd = _draws(idata, f"sd_{g}").mean(axis=0)
        R = _draws(idata, f"cor_{g}").mean(axis=0) if t.k > 1 else np.eye(1)
        T = np.linalg.cholesky(np.outer(sd, sd) * R) / math.sqrt(re_scale)
        cols, rws = np.triu_indices(t.k)
        thetas.append(T[rws, cols])
    theta_hat = np.concatenate(thetas)
    u, u_condvar = _posterior_re(design, idata, theta_hat, re_scale)
    summary = _summary_rows(design, idata, hdi_prob, diag["per_parameter"], map_pt, ml)
    map_info = None
    if map_pt is not None:
        map_info = {"parameterization": MAP_PARAMETERIZATION, "message": map_msg,
                    "beta": pd.Series(map_pt.get("beta", np.zeros(0)), index=list(design.fixef_names)),
                    "point": map_pt}
    optinfo = {
        "priors": pri,
        "posterior_summary": summary,
        "diagnostics": diag,
        "map": map_info if map_info is not None else {"parameterization": MAP_PARAMETERIZATION, "error": map_msg},
        "hdi_prob": hdi_prob,
        "sampler": sampler,
        "draws": draws, "tune": tune, "chains": chains, "seed": seed, "target_accept": target_accept,
        "basis": bas.kind,
        "ml_start": None if ml is None else {"beta": ml.beta_hat, "theta": ml.theta_hat, "loglik": ml.loglik,
                                             "messages": tuple(ml_msgs)},
        "sample_seconds": sample_seconds,
        "varcorr_estimate": "posterior means of the sds and correlations (theta_hat = chol of the "
                            "covariance built from them), not the mean of the covariance",
        "model": model,
    }
    return Fit(
        design=design, method="hmc", beta_hat=beta_hat, vcov_beta=vcov, theta_hat=theta_hat, phi=phi,
        u=u, u_condvar=u_condvar, loglik=None, converged=ok, messages=tuple(msgs),
        seconds=time.perf_counter() - t0, nAGQ=None, estimate_kind="mean", optinfo=optinfo, raw=idata,
    )
