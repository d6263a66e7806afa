"""One fit of 1M binary rows against the time of one plain numpy sweep over the same rows.

    python benchmarks/sweep_ratio.py [--rows 1000000] [--groups 20000] [--reps 3] [--out docs/benchmarks-sweep.md]

Model: y ~ x1 + x2 + x3 + x4 + (1 | g). The sweep is what one evaluation must do at least:
η = Xβ + u[g], μ, the weights, the per-group sums and XᵀWX. The ratio fit / sweep says how many
such sweeps the whole fit costs (start, stage 1, stage 2, standard errors). Bytes touched per
sweep x sweeps / fit time is the bandwidth the fit reaches, reported beside the sweep's own.
Peak RSS is the process's, measured after the fit (data included).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

import numpy as np
import pandas as pd

import glmmbayes as gb


def simulate(n: int, m: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, m, n)
    X = rng.standard_normal((n, 4))
    eta = -0.5 + X @ np.array([0.5, -0.3, 0.2, 0.1]) + rng.normal(0, 0.8, m)[g]
    d = pd.DataFrame(X, columns=["x1", "x2", "x3", "x4"])
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    d["g"] = pd.Categorical.from_codes(g, [f"g{i}" for i in range(m)])
    return d


def sweep(X: np.ndarray, y: np.ndarray, g: np.ndarray, beta: np.ndarray, u: np.ndarray, m: int):
    eta = X @ beta + u[g]
    mu = 1.0 / (1.0 + np.exp(-eta))
    w = mu * (1.0 - mu)
    r = y - mu
    grp = np.bincount(g, weights=w, minlength=m), np.bincount(g, weights=r, minlength=m)
    xtwx = (X * w[:, None]).T @ X
    return grp, xtwx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    a = ap.parse_args()
    data = simulate(a.rows, a.groups)
    X = np.column_stack([np.ones(a.rows), data[["x1", "x2", "x3", "x4"]].to_numpy()])
    y = data["y"].to_numpy(float)
    g = data["g"].cat.codes.to_numpy().astype(np.intp)
    beta, u = np.array([-0.5, 0.5, -0.3, 0.2, 0.1]), np.zeros(a.groups)
    sweeps = []
    for _ in range(max(5, a.reps)):
        t0 = time.perf_counter()
        sweep(X, y, g, beta, u, a.groups)
        sweeps.append(time.perf_counter() - t0)
    t_sweep = statistics.median(sweeps)
    # bytes read: X (5 cols), y, g, u[g]; written and re-read: η, μ, w, r, X*w
    bytes_sweep = a.rows * 8 * (5 + 1 + 1 + 1 + 4 * 2 + 5 * 2)
    fits = []
    for _ in range(a.reps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit = gb.fit("y ~ x1 + x2 + x3 + x4 + (1 | g)", data, family="binomial")
            fits.append(time.perf_counter() - t0)
    t_fit = statistics.median(fits)
    stages = fit.optimizer.stages.values()
    # an evaluation of stage 1 on a subsample of whole groups touches its share of the rows
    full_evals = sum(s.nfev * (1.0 if s.rows is None else s.rows / a.rows) for s in stages)
    counted = " + ".join(f"{s.nfev}" + ("" if s.rows is None else f" on {s.rows:,} rows") for s in stages)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"rows {a.rows:,}  groups {a.groups:,}  reps {a.reps}")
    print(f"one numpy sweep      {t_sweep:8.3f} s  ({bytes_sweep / t_sweep / 1e9:5.1f} GB/s touched)")
    print(f"glmmbayes fit        {t_fit:8.3f} s  ({counted} objective evaluations)")
    print(f"fit / sweep          {t_fit / t_sweep:8.1f}")
    print(f"fit bandwidth        {full_evals * bytes_sweep / t_fit / 1e9:5.1f} GB/s at one sweep per evaluation "
          f"({full_evals * t_sweep / t_fit:.0%} of the sweep's)")
    print(f"peak RSS             {rss:8.0f} MB")
    if a.out:
        share = full_evals * t_sweep / t_fit
        cmd = "python benchmarks/sweep_ratio.py" + ("" if a.rows == 1_000_000 else f" --rows {a.rows}") + \
            ("" if a.groups == 20_000 else f" --groups {a.groups}") + f" --reps {a.reps} --out {a.out}"
        text = "\n".join([
            "# 1M rows against one numpy sweep", "",
            f"Command: `{cmd}` (binary `y ~ x1 + x2 + x3 + x4 + (1 | g)`, {a.rows:,} rows, {a.groups:,} "
            "groups; a sweep is η = Xβ + u[g], μ, the weights, per-group sums and XᵀWX; medians). "
            "Evaluations: stage 1 + stage 2; stage 1 of a fit this large runs on a subsample of whole "
            "groups, and the bandwidth counts each of its evaluations by its share of the rows.", "",
            "| one numpy sweep | glmmbayes fit | fit / sweep | evaluations | bandwidth reached | peak RSS |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {t_sweep:.3f} s ({bytes_sweep / t_sweep / 1e9:.1f} GB/s) | {t_fit:.1f} s | {t_fit / t_sweep:.0f} | "
            f"{counted} | {full_evals * bytes_sweep / t_fit / 1e9:.1f} GB/s ({share:.0%} of the sweep's) | {rss:.0f} MB |", ""])
        with open(a.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
