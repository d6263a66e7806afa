"""`compare(spec, data, methods=...)`: one spec, every method, one tidy table."""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import display
from .progress import progress_bar
from .api import fit
from .errors import SpecError
from .spec import as_spec
from .fit import Fit, varcorr_table
from .spec import Spec

DEFAULT_METHODS = ("pql", "laplace", "agq", "joint", "hmc")
COLUMNS = ["method", "quantity", "term", "group", "estimate_kind", "estimate", "se_or_sd", "lower",
           "upper", "loglik", "seconds", "converged", "hdi_lower", "hdi_upper"]
_Z95 = 1.959963984540054

# What each method's point estimate is, in the table's vocabulary: PQL and the joint fit
# maximize a joint (quasi-)density over (β, u), so their estimates are modes.
_KIND = {"ml": "ml", "mode": "mode", "pql": "mode", "mean": "mean", "median": "median"}


def _sd_se(fit: Fit) -> dict[tuple, float]:
    """Delta-method SEs of the random-effect sds and correlations from the (θ, β) covariance."""
    cov = fit.estimate.vcov_full
    if cov is None or fit.design.spec.re_dist is not None:
        return {}
    nth = len(fit.theta_hat)
    Vt = np.asarray(cov)[:nth, :nth]

    def quantities(theta):
        vc = varcorr_table(fit.design, theta, fit.phi)
        vc = vc[vc["grp"] != "Residual"]
        return vc["sdcor"].to_numpy(), vc

    base, vc = quantities(fit.theta_hat)
    J = np.empty((len(base), nth))
    for i in range(nth):
        e = np.zeros(nth)
        e[i] = 1e-6
        J[:, i] = (quantities(fit.theta_hat + e)[0] - quantities(fit.theta_hat - e)[0]) / 2e-6
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, Vt, J), 0.0))
    out = {}
    for (_, r), s in zip(vc.iterrows(), se):
        key = ("sd", r["var1"], r["grp"]) if not isinstance(r["var2"], str) else (
            "cor", f"{r['var1']}.{r['var2']}", r["grp"])
        out[key] = float(s)
    return out


def fit_rows(name: str, f: Fit) -> list[dict]:
    """The tidy rows of one fit."""
    kind = _KIND.get(f.estimate_kind, f.estimate_kind)
    common = {"method": name, "estimate_kind": kind, "loglik": f.loglik, "seconds": f.seconds,
              "converged": f.converged}
    post = f.posterior
    rows = []
    if post is not None:  # sampled: posterior means, sds, equal-tailed intervals (invariant), HDIs
        for _, r in post.iterrows():
            rows.append({**common, "quantity": r["quantity"], "term": r["term"],
                         "group": r["group"], "estimate": r["mean"], "se_or_sd": r["sd"],
                         "lower": r["eti_lower"], "upper": r["eti_upper"],
                         "hdi_lower": r["lower"], "hdi_upper": r["upper"]})
        return rows
    for nm, est, se in zip(f.design.fixef_names, f.beta_hat, np.sqrt(np.diag(f.vcov_beta))):
        rows.append({**common, "quantity": "fixef", "term": nm, "group": None, "estimate": est,
                     "se_or_sd": se, "lower": est - _Z95 * se, "upper": est + _Z95 * se})
    sdse = _sd_se(f)
    for _, r in f.varcorr.iterrows():
        if r["grp"] == "Residual":
            key = ("sigma", "sigma", None)
        elif isinstance(r["var2"], str):
            key = ("cor", f"{r['var1']}.{r['var2']}", r["grp"])
        else:
            key = ("sd", r["var1"], r["grp"])
        se = sdse.get(key, np.nan)
        lo, hi = (r["sdcor"] - _Z95 * se, r["sdcor"] + _Z95 * se) if np.isfinite(se) else (np.nan, np.nan)
        rows.append({**common, "quantity": key[0], "term": key[1], "group": key[2],
                     "estimate": r["sdcor"], "se_or_sd": se, "lower": lo, "upper": hi})
    for nm, v in (f.re_params or {}).items():
        rows.append({**common, "quantity": "re_param", "term": nm, "group": f.design.terms[0].group_name,
                     "estimate": v, "se_or_sd": np.nan, "lower": np.nan, "upper": np.nan})
    return rows


@dataclass(frozen=True)
class Comparison:
    """Fits of one spec by several methods; `table` is tidy, `wide()` side by side."""

    spec: Spec
    fits: Mapping[str, Fit]
    errors: Mapping[str, str]
    table: pd.DataFrame
    seconds: float
    tracebacks: Mapping[str, str] = field(default_factory=dict, repr=False)

    def wide(self, value: str = "estimate") -> pd.DataFrame:
        """Rows (quantity, group, term), one column per method."""
        t = self.table.copy()
        t["group"] = t["group"].fillna("")
        keys = list(dict.fromkeys(zip(t["quantity"], t["group"], t["term"])))
        order = [m for m in self.fits if m in set(t["method"])]
        cells = {m: {} for m in order}
        for q, g, tm, m, v in zip(t["quantity"], t["group"], t["term"], t["method"], t[value]):
            cells[m][(q, g, tm)] = np.nan if v is None else float(v)
        out = pd.DataFrame({m: [cells[m].get(k, np.nan) for k in keys] for m in order},
                           index=pd.MultiIndex.from_tuples(keys, names=["quantity", "group", "term"]))
        out.columns.name = "method"
        return out

    def plot(self, **kw):
        """Forest plot of fixed effects and random-effect sds across methods."""
        from .plots import forest_plot

        return forest_plot(self, **kw)

    def __str__(self) -> str:
        lines = [f"Comparison of {len(self.fits)} methods for {self.spec}"]
        if len(self.table):
            w = self.wide()
            s = self.wide("se_or_sd").reindex(index=w.index, columns=w.columns)
            body = w.copy().astype(object)
            is_ll = np.array([k[0] == "loglik" for k in w.index])
            for c in w.columns:
                body[c] = [
                    "" if pd.isna(e) else (f"{e:.3f}" if ll else f"{e:.4g}" if pd.isna(v) else f"{e:.4g} ({v:.3g})")
                    for e, v, ll in zip(w[c], s[c], is_ll)
                ]
            lines.append(body.to_string())
            info = []
            for m, f in self.fits.items():
                ll = "NA" if f.loglik is None else f"{f.loglik:.3f}"
                info.append(f"  {m:<8} kind={_KIND.get(f.estimate_kind, f.estimate_kind):<5} "
                            f"logLik={ll:<11} {f.seconds:7.2f}s  converged={f.converged}")
            lines += ["(estimate (se or posterior sd))", *info]
        for m, e in self.errors.items():
            lines.append(f"  {m:<8} FAILED: {e}")
        return "\n".join(lines)

    def _repr_html_(self) -> str | None:
        """Notebook display: the estimates side by side and each method's verdict (HTML)."""
        return display.html(self)


def compare(
    spec: Spec | str,
    data: pd.DataFrame,
    methods: Sequence[str] = DEFAULT_METHODS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    workers: int | None = None,
    **spec_kw,
) -> Comparison:
    """Fit `spec` on `data` with each method and collect the results.

    options: per-method keyword arguments, e.g. {"agq": {"nAGQ": 9}, "hmc": {"draws": 500}}.
    A method that fails is listed in `errors` (and in the printed comparison); the others run.
    progress: a progress bar over the methods (tqdm.auto: a widget in notebooks, text on stderr).
    workers: how many likelihood methods (all but hmc) run at once in threads (numpy and LAPACK
    release the interpreter lock); default: up to the number of cores. hmc runs last, alone,
    since its chains already occupy the cores. Each fit's `seconds` is its own wall time.
    """
    spec = as_spec(spec, **spec_kw)
    options = dict(options or {})
    methods = list(dict.fromkeys(methods))
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise SpecError(f"workers must be a positive integer, got {workers!r}")
    t0 = time.perf_counter()
    results: dict[str, tuple] = {}

    def run(m):
        try:
            return fit(spec, data, method=m, **dict(options.get(m, {}))), None
        except Exception as e:  # noqa: BLE001 -- one failing method must not stop the others
            return None, (f"{type(e).__name__}: {e}", traceback.format_exc())

    bar = progress_bar(methods, desc="compare", unit="method", disable=not progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence problems are in fit.messages
        pooled = [m for m in methods if m != "hmc"]
        if int(workers) > 1 and len(pooled) > 1:
            with ThreadPoolExecutor(max_workers=min(int(workers), len(pooled))) as pool:
                futures = {pool.submit(run, m): m for m in pooled}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.set_postfix_str(futures[fut])
                    bar.update(1)
        else:
            for m in pooled:
                bar.set_postfix_str(m)
                results[m] = run(m)
                bar.update(1)
        for m in methods:
            if m not in results:
                bar.set_postfix_str(m)
                results[m] = run(m)
                bar.update(1)
    bar.close()
    fits = {m: results[m][0] for m in methods if results[m][0] is not None}
    errors = {m: results[m][1][0] for m in methods if results[m][1] is not None}
    tbs = {m: results[m][1][1] for m in methods if results[m][1] is not None}
    return from_fits(fits, errors, spec=spec, seconds=time.perf_counter() - t0, tracebacks=tbs)


def from_fits(fits: Mapping[str, Fit], errors: Mapping[str, str] | None = None, *, spec: Spec | None = None,
              seconds: float | None = None, tracebacks: Mapping[str, str] | None = None) -> Comparison:
    """A Comparison of fits made elsewhere (one spec; keys name the methods), e.g. one Fit
    shown in the comparison's table: ``from_fits({"laplace": fit})``."""
    fits = dict(fits)
    if spec is None:
        if not fits:
            raise SpecError("from_fits needs at least one fit or a spec")
        spec = next(iter(fits.values())).spec
    rows: list[dict] = []
    for m, f in fits.items():
        rows += fit_rows(m, f)
        if f.loglik is not None:
            rows.append({"method": m, "quantity": "loglik", "term": "logLik", "group": None,
                         "estimate_kind": _KIND.get(f.estimate_kind, f.estimate_kind),
                         "estimate": f.loglik, "se_or_sd": np.nan, "lower": np.nan, "upper": np.nan,
                         "loglik": f.loglik, "seconds": f.seconds, "converged": f.converged})
    table = pd.DataFrame(rows, columns=COLUMNS)
    total = sum(f.seconds for f in fits.values()) if seconds is None else seconds
    return Comparison(spec, fits, dict(errors or {}), table, total, dict(tracebacks or {}))
