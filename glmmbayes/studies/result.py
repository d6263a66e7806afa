"""`StudyResult`: the replicates of a simulation study, their summary against the truth (bias,
RMSE, coverage with Monte Carlo standard errors) and a plot."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

COLUMNS = ["_pid", "rep", "method", "quantity", "term", "estimate", "se_or_sd", "lower", "upper",
           "converged", "seconds", "error", "message"]


class StudyResult:
    """Replicates of a study (tidy), with `summary()` and `plot()`.

    `lost` lists the chunks that failed outside their replicates in the last run (a killed
    worker); `n_missing` counts the replicates not yet in the result (run again to add them).
    """

    def __init__(self, replicates: pd.DataFrame, points: list[dict], methods: Sequence[str],
                 truth: pd.DataFrame, n_rep: int, lost=(), name: str = "study", level: float = 0.95):
        self.points = [dict(p) for p in points]
        self.point_names = list(self.points[0]) if self.points else []
        self.methods = list(methods)
        self.n_rep = int(n_rep)
        self.lost = list(lost)
        self.name = name
        self.level = float(level)
        order = {m: i for i, m in enumerate(self.methods)}
        reps = replicates.assign(_m=replicates["method"].map(order))
        # rows in a fixed order, whatever order the chunks finished in
        reps = reps.sort_values(["_pid", "rep", "_m"], kind="stable").drop(columns="_m").reset_index(drop=True)
        self._reps = reps
        self._truth = truth

    @classmethod
    def from_study(cls, study, replicates: pd.DataFrame, lost=()) -> "StudyResult":
        """The result of `study` from its replicate rows."""
        return cls(replicates, study.points, list(study.fits), study.truth_table(), study.n_rep, lost, study.name,
                   study.level)

    def _with_points(self, frame: pd.DataFrame) -> pd.DataFrame:
        pts = pd.DataFrame(self.points, index=pd.RangeIndex(len(self.points), name="_pid"))
        if pts.shape[1] == 0:
            return frame.drop(columns="_pid")
        out = frame.join(pts, on="_pid")
        return out[self.point_names + [c for c in frame.columns if c != "_pid"]]

    @property
    def replicates(self) -> pd.DataFrame:
        """One row per design point, replicate, method and quantity: point columns, rep, method,
        quantity, term, estimate, se_or_sd, lower, upper, converged, seconds, error, message."""
        return self._with_points(self._reps)

    @property
    def n_missing(self) -> int:
        """Replicates of the study not in this result (not run yet, or lost)."""
        done = self._reps[["_pid", "rep"]].drop_duplicates()
        return len(self.points) * self.n_rep - len(done)

    def failures(self) -> pd.DataFrame:
        """The fits that raised: point columns, rep, method, error."""
        f = self._reps[self._reps["error"].notna()]
        return self._with_points(f[["_pid", "rep", "method", "error"]]).reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Per design point, method, quantity and term: truth, n_ok, n_failed, n_nonconverged,
        mean, bias, rel_bias, emp_se (sd of the estimates), mean_se (mean reported se or
        posterior sd), rmse, coverage (of the intervals), and the Monte Carlo standard errors
        mcse_bias, mcse_rmse, mcse_coverage (Morris, White and Crowther 2019)."""
        reps = self._reps
        fails = (reps[reps["error"].notna()].groupby(["_pid", "method"])["rep"].nunique()
                 .rename("n_failed"))
        ok = reps[reps["error"].isna()]
        keys = ["_pid", "method", "quantity", "term"]
        ok = ok.merge(self._truth, on=["_pid", "quantity", "term"], how="left")
        rows = []
        for key, g in ok.groupby(keys, sort=False):
            rows.append((*key, *_stats(g)))
        cols = keys + ["truth", "n_ok", "n_nonconverged", "mean", "bias", "rel_bias", "emp_se", "mean_se",
                       "rmse", "coverage", "mcse_bias", "mcse_rmse", "mcse_coverage"]
        out = pd.DataFrame(rows, columns=cols)
        out = out.join(fails, on=["_pid", "method"])
        out["n_failed"] = out["n_failed"].fillna(0).astype(int)
        order = {m: i for i, m in enumerate(self.methods)}
        out = out.assign(_m=out["method"].map(order)).sort_values(["_pid", "_m"], kind="stable").drop(columns="_m")
        front = keys + ["truth", "n_ok", "n_failed", "n_nonconverged"]
        out = out[front + [c for c in cols if c not in front]].reset_index(drop=True)
        return self._with_points(out)

    def to_string(self) -> str:
        """The summary as text (what the command line prints)."""
        s = self.summary()
        head = f"{self.name}: {len(self.points)} design point(s) x {self.n_rep} replicates"
        if self.n_missing:
            head += f", {self.n_missing} not run yet"
        return head + "\n" + s.to_string(index=False, float_format=lambda v: f"{v:.4g}")

    def __repr__(self) -> str:
        return f"<StudyResult {self.name}: {len(self._reps)} rows, {self.n_missing} replicates missing>"

    def plot(self, quantities: Sequence[str] | None = None, x: str | None = None):
        """Bias (with ±2 MCSE bars) and coverage (with the nominal level) of each method across
        the grid, one row of panels per quantity and term with a truth. Returns the Figure."""
        import matplotlib.pyplot as plt

        s = self.summary()
        s = s[s["truth"].notna()]
        if quantities is not None:
            s = s[s["quantity"].isin(list(quantities))]
        terms = list(dict.fromkeys(zip(s["quantity"], s["term"])))
        if not terms:
            raise ValueError("no quantity with a truth to plot")
        x = x or (self.point_names[0] if self.point_names else None)
        fig, axes = plt.subplots(len(terms), 2, figsize=(9, 2.6 * len(terms)), squeeze=False)
        for (q, t), (ax_b, ax_c) in zip(terms, axes):
            sub = s[(s["quantity"] == q) & (s["term"] == t)]
            for k, m in enumerate(self.methods):
                g = sub[sub["method"] == m]
                if g.empty:
                    continue
                xs = g.groupby(x, sort=False).mean(numeric_only=True) if x else g.assign(_x=0).groupby("_x").mean(numeric_only=True)
                pos = np.arange(len(xs)) + (k - (len(self.methods) - 1) / 2) * 0.08
                ax_b.errorbar(pos, xs["bias"], yerr=2 * xs["mcse_bias"], marker="o", capsize=3, label=m)
                if xs["coverage"].notna().any():
                    ax_c.errorbar(pos, xs["coverage"], yerr=2 * xs["mcse_coverage"], marker="o", capsize=3, label=m)
                labels = [str(v) for v in xs.index]
            for ax in (ax_b, ax_c):
                ax.set_xticks(np.arange(len(labels)), labels)
                ax.set_xlabel(x or "")
            ax_b.axhline(0, color="grey", lw=0.8)
            ax_b.set_ylabel(f"bias {q} {t}")
            ax_c.axhline(self.level, color="grey", lw=0.8, ls="--")
            ax_c.set_ylabel("coverage")
        axes[0, 0].legend(fontsize="small")
        axes[0, 0].set_title("bias ± 2 MCSE")
        axes[0, 1].set_title("interval coverage ± 2 MCSE")
        fig.tight_layout()
        return fig


def _stats(g: pd.DataFrame) -> tuple:
    est = g["estimate"].to_numpy(float)
    est = est[np.isfinite(est)]
    n = len(est)
    truth = g["truth"].iloc[0] if "truth" in g else np.nan
    nonconv = int((~g["converged"]).sum())
    if n == 0:
        return (truth, 0, nonconv) + (np.nan,) * 10
    mean = est.mean()
    sd = est.std(ddof=1) if n > 1 else np.nan
    se = g["se_or_sd"].to_numpy(float)
    mean_se = float(np.nanmean(se)) if np.isfinite(se).any() else np.nan
    bias = mean - truth
    rel = bias / truth if truth not in (0, 0.0) and np.isfinite(truth) else np.nan
    err2 = (est - truth) ** 2
    mse = err2.mean()
    rmse = np.sqrt(mse)
    mcse_mse = np.sqrt(((err2 - mse) ** 2).sum() / (n * (n - 1))) if n > 1 else np.nan
    mcse_rmse = mcse_mse / (2 * rmse) if rmse > 0 else np.nan
    lo, hi = g["lower"].to_numpy(float), g["upper"].to_numpy(float)
    has = np.isfinite(lo) & np.isfinite(hi)
    if has.any() and np.isfinite(truth):
        cover = ((lo[has] <= truth) & (truth <= hi[has])).mean()
        mcse_cov = np.sqrt(cover * (1 - cover) / has.sum())
    else:
        cover = mcse_cov = np.nan
    return (truth, n, nonconv, mean, bias, rel, sd, mean_se, rmse, cover,
            sd / np.sqrt(n) if n > 1 else np.nan, mcse_rmse, mcse_cov)
