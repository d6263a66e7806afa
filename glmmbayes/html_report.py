"""A shareable HTML report of a Fit or a Comparison: one self-contained file (inline CSS, the
forest plot as an embedded PNG, no scripts, nothing fetched), and the notebook displays
(`Fit._repr_html_`, `Comparison._repr_html_`)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from . import display
from .compare import Comparison, from_fits
from .errors import GlmmError, SpecError
from .fit import Fit
from .methods import METHODS

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 60em; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; color: #334; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: right; }
th { background: #eef; } td.l, th.l { text-align: left; }
code, pre { font-family: Menlo, Consolas, monospace; font-size: .85em; }
pre { background: #f6f6f8; padding: .6em; overflow-x: auto; }
.ok { color: #176b28; } .bad { color: #a01818; font-weight: bold; }
img { max-width: 100%; }
ul.msgs li { margin: .2em 0; }
"""

_VERSIONED = ("glmmbayes", "numpy", "scipy", "pandas", "formulaic", "pymc", "pytensor", "arviz", "matplotlib")


def _e(x) -> str:
    return html.escape(str(x))


def _num(v, fmt: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    return format(v, fmt)


def _table(df: pd.DataFrame, id_: str | None = None, index: bool = True) -> str:
    """A plain HTML table (text left-aligned, numbers right-aligned), without pandas' styling."""
    idx_names = [n or "" for n in df.index.names] if index else []
    head = "".join(f'<th class="l">{_e(n)}</th>' for n in idx_names)
    head += "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for key, row in df.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        cells = "".join(f'<td class="l">{_e(k)}</td>' for k in keys) if index else ""
        for v in row:
            cls = ' class="l"' if isinstance(v, str) and not _looks_numeric(v) else ""
            cells += f"<td{cls}>{_e(_num(v) if isinstance(v, (float, np.floating)) else v)}</td>"
        body.append(f"<tr>{cells}</tr>")
    ident = f' id="{id_}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _looks_numeric(s: str) -> bool:
    try:
        float(s.split(" ")[0])
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------ pieces


def estimates_table(comparison: Comparison) -> pd.DataFrame:
    """Every method's estimates side by side as text: "estimate (se or posterior sd)"."""
    if not len(comparison.table):
        return pd.DataFrame()
    w = comparison.wide()
    s = comparison.wide("se_or_sd").reindex(index=w.index, columns=w.columns)
    out = pd.DataFrame(index=w.index, columns=w.columns, dtype=object)
    for c in w.columns:
        out[c] = ["" if pd.isna(e) else f"{e:.4g}" if pd.isna(v) else f"{e:.4g} ({v:.3g})"
                  for e, v in zip(w[c], s[c])]
    return out


def methods_table(comparison: Comparison) -> pd.DataFrame:
    """One row per method: what it estimates, its likelihood, time and verdict."""
    rows = []
    for m, f in comparison.fits.items():
        rows.append({"method": m, "title": METHODS[f.method].title if f.method in METHODS else f.method,
                     "estimates": f.estimate_kind, "logLik": f.loglik, "AIC": f.aic, "BIC": f.bic,
                     "seconds": round(f.seconds, 2), "converged": "yes" if f.converged else "NO"})
    for m, err in comparison.errors.items():
        rows.append({"method": m, "title": "failed", "estimates": "", "logLik": None, "AIC": None, "BIC": None,
                     "seconds": None, "converged": err})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def data_summary(fit: Fit) -> pd.DataFrame:
    """Rows used and omitted, the response and the grouping factors of a fit's design."""
    d = fit.design
    items = [("rows used", d.n), ("rows omitted (missing values)", d.n_omitted), ("response", d.response_name)]
    if d.family.dist.binary_response:
        items.append(("successes / trials", f"{np.sum(d.y * d.wt):.6g} / {np.sum(d.wt):.6g}"))
    else:
        items.append(("response mean (sd)", f"{np.mean(d.y):.4g} ({np.std(d.y, ddof=1) if d.n > 1 else 0:.4g})"))
        items.append(("response range", f"{np.min(d.y):.4g} to {np.max(d.y):.4g}"))
    items.append(("fixed-effect columns", d.p))
    items += [(f"groups: {g}", n) for g, n in d.ngrps.items()]
    if d.dropped:
        items.append(("dropped (rank deficient)", ", ".join(d.dropped)))
    return pd.DataFrame({"value": [str(v) for _, v in items]}, index=pd.Index([k for k, _ in items], name="item"))


def model_summary(comparison: Comparison) -> pd.DataFrame:
    sp = comparison.spec
    items = [("formula", sp.formula), ("family", sp.family_name), ("link", sp.link_name),
             ("REML", sp.reml), ("weights", sp.weights), ("offset", sp.offset),
             ("methods", ", ".join(list(comparison.fits) + list(comparison.errors)))]
    if sp.re_dist is not None:
        items.append(("random-effect distribution", sp.re_dist))
    return pd.DataFrame({"value": [str(v) for _, v in items if v is not None]},
                        index=pd.Index([k for k, v in items if v is not None], name="item"))


def forest_png(comparison: Comparison) -> str | None:
    """The forest plot as a base64 PNG (None when there is nothing to plot)."""
    import matplotlib.pyplot as plt

    from .plots import forest_plot

    t = comparison.table
    if not len(t) or not t["quantity"].isin(["fixef", "sd"]).any():
        return None
    fig = forest_plot(comparison)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)  # not shown again by a notebook
    return base64.b64encode(buf.getvalue()).decode("ascii")


def convergence_html(comparison: Comparison) -> str:
    parts = []
    for m, f in comparison.fits.items():
        verdict = '<span class="ok">converged</span>' if f.converged else '<span class="bad">NOT converged</span>'
        msgs = "".join(f"<li>{_e(x)}</li>" for x in f.messages) or "<li>no remarks</li>"
        extra = ""
        if f.sampler is not None:
            dg = f.sampler.diagnostics
            extra = (f"<p>max R-hat {dg.max_rhat:.4f}; min bulk ESS {dg.min_ess_bulk:.0f}; min tail ESS "
                     f"{dg.min_ess_tail:.0f}; divergences {dg.divergences}; max tree depth hits "
                     f"{dg.max_treedepth_hits}</p>")
        elif f.optimizer is not None:
            op = f.optimizer
            g = "" if op.gradient is None or not len(op.gradient) else (
                f"; max |deviance gradient| {np.max(np.abs(op.gradient[: op.n_checked])):.3g}")
            extra = f"<p>optimizer: {op.nfev} evaluations{g}; {_e(op.message or 'no message')}</p>"
        parts.append(f"<h3>{_e(m)}: {verdict}</h3>{extra}<ul class=\"msgs\">{msgs}</ul>")
    for m, err in comparison.errors.items():
        parts.append(f'<h3>{_e(m)}: <span class="bad">failed</span></h3><pre>{_e(err)}</pre>')
    return "".join(parts)


def adequacy_html(comparison: Comparison) -> str:
    """Laplace against adaptive quadrature at the first ML-type fit (glmmbayes.adequacy)."""
    pick = next((f for m in ("laplace", "agq", "pql", "joint") for k, f in comparison.fits.items()
                 if f.method == m), None)
    if pick is None:
        return "<p>No likelihood-based fit to check.</p>"
    try:
        df = pick.laplace_adequacy()
    except (GlmmError, SpecError) as e:
        return f"<p>Not applicable: {_e(e)}</p>"
    s = df.attrs["summary"]
    auto = ""
    check = getattr(pick.details, "adequacy", None)
    if check is not None:  # the fit's own check: the predicted move of the estimates under AGQ
        shift = "" if check.shift is None else f"predicted shift of the estimates {check.shift:.3g} (in SEs); "
        auto = (f"<p>Check made by the fit (AGQ({check.nAGQ}) at the Laplace estimate): {shift}log-likelihood "
                f"difference {check.difference:+.3g}; verdict: "
                f"{'<span class=ok>adequate</span>' if check.adequate else '<span class=bad>not adequate</span>'}.</p>")
    ladder = pd.DataFrame({"logLik": list(s["loglik_by_nAGQ"].values())},
                          index=pd.Index(list(s["loglik_by_nAGQ"]), name="nAGQ"))
    worst = df.reindex(df["difference"].abs().sort_values(ascending=False).index).head(5).set_index("level")
    return (f"{auto}<p>Per cluster, at the {_e(pick.method)} estimate: {_e(s['advice'])}</p>"
            f"<p>AGQ log-likelihood at the same parameters by number of quadrature points "
            f"(recommended nAGQ: {s['recommended_nAGQ']}):</p>{_table(ladder, 'adequacy-ladder')}"
            f"<p>Clusters where Laplace and AGQ differ most:</p>"
            f"{_table(worst[['n_obs', 'laplace', 'agq', 'difference', 'max_abs_log_t']], 'adequacy-clusters')}")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in _VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ------------------------------------------------------------------------ documents


def _as_comparison(result) -> Comparison:
    if isinstance(result, Comparison):
        return result
    if isinstance(result, Fit):
        return from_fits({result.method: result})
    raise SpecError(f"report() takes a glmmbayes Fit or Comparison, got {type(result).__name__}")


def report_html(result: Fit | Comparison, *, command: str | None = None, title: str | None = None) -> str:
    """The full report as one HTML document (str)."""
    c = _as_comparison(result)
    first = next(iter(c.fits.values()), None)
    title = title or f"glmmbayes report: {c.spec.formula}"
    png = forest_png(c)
    plot = (f'<img id="forest-plot" alt="forest plot of the estimates by method" src="data:image/png;base64,{png}">'
            if png else "<p>No estimates to plot.</p>")
    est = estimates_table(c)
    est_html = _table(est, "estimates") if len(est) else "<p>No method produced estimates.</p>"
    summaries = "".join(f"<details><summary>{_e(m)}</summary><pre>{_e(f.summary())}</pre></details>"
                        for m, f in c.fits.items())
    prov = pd.DataFrame({"value": list(versions().values())}, index=pd.Index(list(versions()), name="item"))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    cmd = command if command is not None else "glmmbayes.report(...) from Python"
    sections = [
        f"<h1>{_e(title)}</h1>",
        "<h2>Model</h2>", _table(model_summary(c), "model"),
        "<h2>Data</h2>", _table(data_summary(first), "data") if first is not None else "<p>No fit.</p>",
        "<h2>Methods</h2>", _table(methods_table(c), "methods"),
        "<h2>Estimates by method</h2>",
        "<p>Estimate (standard error, or posterior sd for sampled fits); fixed effects, random-effect "
        "standard deviations and correlations, and the log-likelihood where the method has one.</p>",
        est_html,
        "<h2>Forest plot</h2>", plot,
        "<h2>Convergence</h2>", convergence_html(c),
        "<h2>Laplace adequacy</h2>", adequacy_html(c),
        "<h2>Summaries</h2>", summaries,
        "<h2>Provenance</h2>", f"<p>Made {when} by:</p><pre id=\"command\">{_e(cmd)}</pre>", _table(prov, "versions"),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n")


def report(result: Fit | Comparison, path: str | Path | None = None, *, command: str | None = None,
           title: str | None = None) -> Path | str:
    """Write a self-contained HTML report of a Fit or a Comparison.

    The report has the model, a data summary, every method's estimates side by side, the forest
    plot (embedded PNG), convergence and Laplace-adequacy diagnostics, each method's text summary
    and the command and package versions that produced it; it loads nothing from the network.
    command: the command line to record (the CLI passes its own). Returns the Path written, or
    the HTML text when `path` is None.
    """
    text = report_html(result, command=command, title=title)
    if path is None:
        return text
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


def fit_html(fit: Fit) -> str:
    """Notebook display of a Fit: model, fixed effects, variance components, verdict."""
    fe = pd.DataFrame({"Estimate": fit.fixef, "Std. Error": fit.se})
    vc = fit.varcorr.copy()
    vc["var1"] = vc["var1"].fillna("")
    vc["var2"] = vc["var2"].fillna("")
    ll = "" if fit.loglik is None else f", logLik {fit.loglik:.4f}"
    verdict = '<span class="ok">converged</span>' if fit.converged else '<span class="bad">NOT converged</span>'
    msgs = "".join(f"<li>{_e(m)}</li>" for m in fit.messages)
    return (f"<div><p><b>{_e(fit.method)}</b> fit of <code>{_e(fit.spec)}</code>: {fit.nobs} observations"
            f"{_e(ll)}, {verdict}</p><p>Fixed effects:</p>{_table(fe)}<p>Random effects:</p>"
            f"{_table(vc.set_index('grp'))}{f'<ul>{msgs}</ul>' if msgs else ''}</div>")


def comparison_html(comparison: Comparison) -> str:
    """Notebook display of a Comparison: estimates side by side and each method's verdict."""
    est = estimates_table(comparison)
    return (f"<div><p>Comparison of {len(comparison.fits)} methods for <code>{_e(comparison.spec)}</code></p>"
            f"{_table(est) if len(est) else ''}{_table(methods_table(comparison))}"
            f"<p>estimate (se or posterior sd)</p></div>")


display.register("Fit", fit_html)
display.register("Comparison", comparison_html)
