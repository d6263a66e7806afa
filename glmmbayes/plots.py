"""Plots where a person would rather look than read (matplotlib, imported lazily)."""

from __future__ import annotations

import numpy as np

_MARKERS = {"ml": "o", "mode": "s", "mean": "D", "median": "^"}


def forest_plot(comparison, quantities=("fixef", "sd"), ax=None, figsize=None):
    """Estimates with 95% intervals (Wald for ML/mode fits, equal-tailed for posterior fits), one row per
    parameter, one colour per method; fixed effects and random-effect sds in separate panels."""
    import matplotlib.pyplot as plt

    t = comparison.table
    t = t[t["quantity"].isin(quantities)].copy()
    t["group"] = t["group"].fillna("")
    panels = [q for q in quantities if (t["quantity"] == q).any()]
    methods = list(dict.fromkeys(t["method"]))
    if ax is None:
        nrows = [len(t[t["quantity"] == q][["group", "term"]].drop_duplicates()) for q in panels]
        fig, axes = plt.subplots(
            len(panels), 1, figsize=figsize or (7, 1.2 + 0.45 * sum(nrows) + 0.6 * len(panels)),
            gridspec_kw={"height_ratios": [max(r, 1) for r in nrows]}, squeeze=False,
        )
        axes = axes[:, 0]
    else:
        fig, axes = ax.figure, np.atleast_1d(ax)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a, q in zip(axes, panels):
        sub = t[t["quantity"] == q]
        params = list(dict.fromkeys(zip(sub["group"], sub["term"])))
        for k, m in enumerate(methods):
            mm = sub[sub["method"] == m]
            off = (k - (len(methods) - 1) / 2) * 0.8 / max(len(methods), 1)
            for i, (g, term) in enumerate(params):
                r = mm[(mm["group"] == g) & (mm["term"] == term)]
                if r.empty:
                    continue
                r = r.iloc[0]
                y = len(params) - 1 - i + off
                if np.isfinite(r["lower"]) and np.isfinite(r["upper"]):
                    a.plot([r["lower"], r["upper"]], [y, y], color=colors[k % len(colors)], lw=1.5)
                a.plot(r["estimate"], y, _MARKERS.get(r["estimate_kind"], "o"), color=colors[k % len(colors)],
                       label=f"{m} ({r['estimate_kind']})" if i == 0 else None)
        # the dodge offsets reach ±0.4: fixed limits keep the outer markers inside the axes
        # (automatic margins clipped the top marker of a one-row panel)
        a.set_ylim(-0.6, len(params) - 0.4)
        a.set_yticks(range(len(params)))
        a.set_yticklabels([f"{g}: {tm}" if g else tm for g, tm in reversed(params)])
        a.axvline(0.0, color="0.8", lw=0.8, zorder=0)
        a.set_title({"fixef": "Fixed effects", "sd": "Random-effect standard deviations",
                     "cor": "Random-effect correlations"}.get(q, q), fontsize=10)
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def invariance_plot(result, figsize=(10, 6.5), quantiles=(0.005, 0.995)):
    """The posterior of one sd on four scales: the ML point, the posterior mean of the sd and the
    equal-tailed interval (shaded) land on the same σ on every panel; the posterior mode does not.
    Each panel spans the posterior `quantiles` on its own scale (extended to a boundary mode);
    a density unbounded at the boundary is drawn up to the local mode's height and labelled."""
    import matplotlib.pyplot as plt

    sig = result.grid["sigma"].to_numpy()
    dens_sigma = np.exp(result.grid["log_posterior"].to_numpy())
    fig, axes = plt.subplots(2, 2, figsize=figsize)
    for a, (_, row) in zip(axes.ravel(), result.table.iterrows()):
        to, _, dsdpsi = result.scales[row["scale"]]
        psi = to(sig)
        dens = dens_sigma * dsdpsi(sig)
        srt = np.argsort(psi)
        psi, dens = psi[srt], dens[srt]
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(psi))])
        lo, hi = np.interp(quantiles, cdf / cdf[-1], psi)
        if row["mode_at_boundary"] and np.isfinite(row["posterior_mode"]):
            lo, hi = min(lo, row["posterior_mode"]), max(hi, row["posterior_mode"])
        inside = (psi >= lo) & (psi <= hi)
        unbounded = row["boundary_exponent"] < -0.5
        top = dens[np.searchsorted(psi, row["local_mode"])] if unbounded and np.isfinite(row["local_mode"]) \
            else dens[inside].max()
        a.plot(psi[inside], dens[inside] / top, color="0.3")
        a.axvspan(row["eti_lower"], row["eti_upper"], color="tab:blue", alpha=0.08,
                  label="equal-tailed interval (invariant)")
        a.axvline(row["ml"], color="k", lw=1.2, label=f"ML (σ = {row['ml_as_sd']:.3f})")
        if row["mode_at_boundary"]:
            a.plot([], [], " ", label=row["mode_note"])
            if np.isfinite(row["local_mode"]):
                a.axvline(row["local_mode"], color="tab:red", ls=":", lw=1.2,
                          label=f"local mode only (σ = {row['local_mode_as_sd']:.3f})")
        else:
            a.axvline(row["posterior_mode"], color="tab:red", ls=":", lw=1.8,
                      label=f"posterior mode (σ = {row['posterior_mode_as_sd']:.3f})")
        a.axvline(to(np.array(row["posterior_mean_of_sd"])), color="tab:blue", ls="--", lw=1.2,
                  label=f"E[σ] = {row['posterior_mean_of_sd']:.3f}, mapped")
        a.set_xlim(lo, hi)
        a.set_ylim(0, 1.15 if not unbounded else 1.6)
        if unbounded:
            a.annotate("density → ∞", xy=(lo, 1.55), xytext=(lo + 0.08 * (hi - lo), 1.45), fontsize=7,
                       color="tab:red", arrowprops=dict(arrowstyle="->", color="tab:red"))
        a.set_title(f"{row['scale']}", fontsize=10)
        a.set_yticks([])
        a.legend(fontsize=7)
    fig.suptitle(f"sd of '{result.group}': ML, posterior means and equal-tailed intervals are invariant, "
                 f"modes are not (prior {result.prior})", fontsize=10)
    fig.tight_layout()
    return fig
