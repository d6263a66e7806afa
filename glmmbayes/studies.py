"""Simulation studies: McCulloch's Table 1 (seed 000, the normal–exponential model).

Model (8): y_ij = beta x_i + u_j^½ + e_ij, i = 1..n, j = 1..q, x_i = i/n, u_j ~ Exponential(lambda)
with lambda known, e_ij ~ N(0, 1) with the variance known (= 1). McCulloch: beta = 5, n = 2,
lambda = 1, q = 20, 50, 100, 200; each entry of Table 1 is the average of the estimates of beta over
the replicates with its Monte Carlo standard error (sd / sqrt(n_rep)); his replicate numbers were
chosen to give SEs <= .007 (not stated; about 1200 at q = 20 down to about 250 at q = 200).

His joint-maximization column "Using Z u^½" is computed from his closed form (eqs. 6–7), which
lets u^½ = (Z'Z + 2λI)⁻¹Z'(Y - Xβ) be negative, i.e. ignores u >= 0: that is method="joint"
with parameterization="u", constrain=False, and its expectation is exactly beta + 6 sqrt(pi)/11 = 5.967 (his eq. 7).
Maximizing over the model's parameter space u >= 0 (`constrain=True`) gives a different, also
biased estimator (about 5.75): column `joint_u_constrained`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

import numpy as np
import pandas as pd

from .api import run_method
from .design import build_design
from .re_dist import RandomEffect
from .spec import Spec

MCCULLOCH_TABLE1 = pd.DataFrame(
    {
        "joint_u": [5.979, 5.968, 5.958, 5.977],
        "joint_u_se": [0.007, 0.006, 0.007, 0.007],
        "joint_w": [5.163, 5.150, 5.139, 5.157],
        "joint_w_se": [0.007, 0.005, 0.006, 0.007],
        "ml": [5.017, 5.004, 4.993, 5.011],
        "ml_se": [0.007, 0.005, 0.006, 0.007],
    },
    index=pd.Index([20, 50, 100, 200], name="q"),
)
"""McCulloch (seed 000) Table 1: average estimates of beta (true 5) with their standard errors."""

ESTIMATORS = ("joint_u", "joint_u_constrained", "joint_w", "ml")
FORMULA = "y ~ 0 + x + (1 | g)"


def joint_u_expectation(n: int = 2, lam: float = 1.0, beta: float = 5.0) -> float:
    """McCulloch's eq. (7) for model (8): E[beta_joint,u] = beta + bias, bias independent of q.

    bias = 2 lam (sum x) E[u^½] / ((sum x²)(n + 2 lam) - (sum x)²), E[u^½] = sqrt(pi / lam) / 2."""
    x = np.arange(1, n + 1) / n
    e_sqrt_u = 0.5 * math.sqrt(math.pi / lam)
    return beta + 2 * lam * x.sum() * e_sqrt_u / ((x @ x) * (n + 2 * lam) - x.sum() ** 2)


def simulate_normal_exponential(rng: np.random.Generator, q: int, n: int = 2, beta: float = 5.0,
                                lam: float = 1.0) -> pd.DataFrame:
    """One data set from McCulloch's model (8), rows ordered by group then i."""
    x = np.arange(1, n + 1) / n
    u = rng.exponential(1.0 / lam, size=q)
    y = beta * x[None, :] + np.sqrt(u)[:, None] + rng.standard_normal((q, n))
    return pd.DataFrame({
        "y": y.ravel(),
        "x": np.tile(x, q),
        "g": np.repeat([f"g{j:04d}" for j in range(q)], n),
    })


def replicate_seed(seed: int, q: int, rep: int) -> np.random.SeedSequence:
    """The replicate's own seed: a function of (seed, q, rep) only, so the table does not depend on
    the number of processes or the order in which replicates run."""
    return np.random.SeedSequence([int(seed), int(q), int(rep)])


# per-process cache: one design per (q, n, lam), responses swapped in
_CACHE: dict = {}


def _design(q, n, lam, beta):
    key = ("design", q, n, lam)
    if key not in _CACHE:
        df = simulate_normal_exponential(np.random.default_rng(0), q, n, beta, lam)
        spec = Spec(FORMULA, family="gaussian", known_dispersion=1.0,
                    re_dist=RandomEffect("exponential", rate=lam, entry="sqrt"))
        _CACHE[key] = build_design(spec, df)
    return _CACHE[key]


def _one(q, rep, seed, n, beta, lam, hmc, hmc_opts):
    rng = np.random.default_rng(replicate_seed(seed, q, rep))
    df = simulate_normal_exponential(rng, q, n, beta, lam)
    design = _design(q, n, lam, beta).with_response(df["y"].to_numpy())
    out = {"q": q, "rep": rep}
    ml = run_method(design, "agq")
    out["ml"] = float(ml.beta_hat[0])
    for col, par, con in (("joint_u", "u", False), ("joint_u_constrained", "u", True), ("joint_w", "w", True)):
        j = run_method(design, "joint", {"parameterization": par, "constrain": con})
        out[col] = float(j.beta_hat[0])
        if not j.converged:
            out.setdefault("messages", []).append(f"{col}: {'; '.join(j.messages)}")
    if not ml.converged:
        out.setdefault("messages", []).append(f"ml: {'; '.join(ml.messages)}")
    if hmc:
        import logging

        logging.getLogger("pymc").setLevel(logging.WARNING)
        opts = {"draws": hmc_opts.get("draws", 1000), "tune": hmc_opts.get("tune", 1000),
                "chains": hmc_opts.get("chains", 2), "cores": 1, "progressbar": False,
                "seed": int(rng.integers(2**31)), "parameterization": hmc_opts.get("parameterization", "w"),
                "priors": {"fixef": "flat"}, "compute_map": False}
        out["hmc"] = float(run_method(design, "hmc", opts).beta_hat[0])
    return out


def _chunk(args):
    q, reps, seed, n, beta, lam, hmc, hmc_opts = args
    from .core.threads import single_threaded_blas

    with single_threaded_blas():
        return [_one(q, r, seed, n, beta, lam, hmc, hmc_opts) for r in reps]


class _Progress:
    """A plain-text progress line on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.perf_counter()

    def update(self, k):
        self.done += k
        if self.enabled:
            el = time.perf_counter() - self.t0
            eta = el / self.done * (self.total - self.done) if self.done else float("nan")
            w = 30
            bar = "#" * int(w * self.done / self.total)
            sys.stderr.write(f"\r[{bar:<{w}}] {self.done}/{self.total} replicates  {el:.0f}s elapsed, ~{eta:.0f}s left")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def normal_exponential_replicates(q=(20, 50, 100, 200), n_rep: int = 200, seed: int = 0, processes: int | None = None,
                                  hmc: bool = False, n: int = 2, beta: float = 5.0, lam: float = 1.0,
                                  progress: bool | None = None, chunk: int | None = None,
                                  hmc_opts: dict | None = None) -> pd.DataFrame:
    """One row per (q, replicate) with every estimator's beta (see `normal_exponential_table`)."""
    qs = [int(v) for v in np.atleast_1d(q)]
    hmc_opts = dict(hmc_opts or {})
    if chunk is None:
        chunk = 5 if hmc else 25
    tasks = [(qq, list(range(a, min(a + chunk, n_rep))), seed, n, beta, lam, hmc, hmc_opts)
             for qq in qs for a in range(0, n_rep, chunk)]
    if processes is None:
        processes = os.cpu_count() or 1
    bar = _Progress(len(qs) * n_rep, sys.stderr.isatty() if progress is None else progress)
    rows = []
    if processes <= 1:
        for t in tasks:
            r = _chunk(t)
            rows += r
            bar.update(len(r))
    else:
        with ProcessPoolExecutor(max_workers=processes) as ex:
            futs = [ex.submit(_chunk, t) for t in tasks]
            for f in as_completed(futs):
                r = f.result()
                rows += r
                bar.update(len(r))
    bar.close()
    df = pd.DataFrame(rows).sort_values(["q", "rep"]).reset_index(drop=True)
    if "messages" not in df:
        df["messages"] = None
    return df


def normal_exponential_table(q=(20, 50, 100, 200), n_rep: int = 200, seed: int = 0, processes: int | None = None,
                             hmc: bool = False, n: int = 2, beta: float = 5.0, lam: float = 1.0,
                             progress: bool | None = None, hmc_opts: dict | None = None,
                             return_replicates: bool = False):
    """Reproduce McCulloch's Table 1: the average estimate of beta over `n_rep` replicates per q,
    with its Monte Carlo SE (sd / sqrt(n_rep)), for

    - ``joint_u``: joint maximization with Z u^½ as McCulloch computed it (closed form, u^½ free);
    - ``joint_u_constrained``: the same with u >= 0 enforced (the actual joint mode);
    - ``joint_w``: joint maximization with Z w, w = u^½ Rayleigh;
    - ``ml``: exact ML by per-group quadrature;
    - ``hmc`` (hmc=True): the posterior mean of beta, flat prior, NUTS (``hmc_opts``: draws, tune,
      chains, parameterization; defaults 1000, 1000, 2, "w").

    Replicates run in `processes` worker processes (default: all CPUs; 1 = in this process), each
    with the seed `replicate_seed(seed, q, rep)`, so the same seed gives the same table whatever the
    number of processes. A progress line is written to stderr when it is a terminal.
    Columns also include ``n_rep`` and ``n_failed`` (replicates with a convergence message).
    """
    reps = normal_exponential_replicates(q, n_rep, seed, processes, hmc, n, beta, lam, progress,
                                         hmc_opts=hmc_opts)
    cols = [c for c in (*ESTIMATORS, "hmc") if c in reps]
    g = reps.groupby("q")
    out = pd.DataFrame(index=pd.Index(sorted(reps["q"].unique()), name="q"))
    for c in cols:
        out[c] = g[c].mean()
        out[f"{c}_se"] = g[c].std(ddof=1) / np.sqrt(g[c].count())
    out["n_rep"] = g.size()
    out["n_failed"] = g["messages"].apply(lambda s: int(sum(m is not None and m == m for m in s)))
    out.attrs["joint_u_expected"] = joint_u_expectation(n, lam, beta)
    out.attrs["seed"] = seed
    if return_replicates:
        return out, reps
    return out
