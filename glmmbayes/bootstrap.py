"""Parametric bootstrap of a fit (lme4's ``bootMer(type = "parametric")``): simulate new responses
from the fitted model (new random effects from the fitted covariance, new responses from the
family), refit the same spec by the same method and options, and collect the estimates.

Runs on the studies engine's runner: serially, in local processes or on a Dask cluster, every
replicate with its own seed derived from `seed`, so the result is identical however it runs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from .errors import FitError, SpecError
from .quantities import fit_values, lme4_names


def simulate_response(fit, rng: np.random.Generator) -> np.ndarray:
    """One response vector drawn from `fit` in the design's convention (proportions for a
    binomial with trials): new random effects from the fitted distribution (lme4's
    ``simulate(use.u = FALSE)``)."""
    y = fit.simulate(1, seed=rng).iloc[:, 0].to_numpy(float)
    d = fit.design
    if d.family.dist.binary_response and np.any(d.wt > 1):
        y = y / d.wt  # simulate returns counts of successes
    return y


def _refit_chunk(payload, reps):
    fit, entropy, names = payload
    out = []
    for r in reps:
        rng = np.random.default_rng(np.random.SeedSequence([entropy, int(r)]))
        try:
            new = fit.call.refit(fit.design.with_response(simulate_response(fit, rng)))
            vals = fit_values(new).reindex(names).to_numpy(float)
            out.append((int(r), vals, None, tuple(new.messages), bool(new.converged)))
        except Exception as e:  # noqa: BLE001 -- a failed refit is counted, as in bootMer
            out.append((int(r), np.full(len(names), np.nan), f"{type(e).__name__}: {e}", (), False))
    return out


def bootstrap(fit, nsim: int = 500, seed: int | None = None, parallel: int | None = None, client=None,
              progress: bool = True, chunk_size: int = 25) -> "BootstrapResult":
    """Parametric bootstrap of `fit` with `nsim` refits (see `Fit.bootstrap`)."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise SpecError(f"nsim must be a positive integer, got {nsim!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise SpecError(f"seed must be a non-negative integer or None, got {seed!r}")
    if parallel is not None and (not isinstance(parallel, (int, np.integer)) or parallel < 1):
        raise SpecError(f"parallel must be a number of processes >= 1 or None, got {parallel!r}")
    if fit.call is None or fit.call.refit is None:
        raise FitError("this fit cannot be refitted (it was not made by glmmbayes.fit)")
    from .studies.runner import run_tasks

    entropy = int(np.random.SeedSequence().entropy if seed is None else seed)
    t0 = fit_values(fit)
    names = list(t0.index)
    tasks = [tuple(range(a, min(a + chunk_size, nsim))) for a in range(0, nsim, chunk_size)]
    rows: list = []

    def on_result(task, chunk):
        rows.extend(chunk)
        return len(chunk)

    log = run_tasks(_refit_chunk, (fit, entropy, names), tasks, on_result, client=client,
                    processes=parallel or 1, progress=progress, total=nsim, desc="bootstrap")
    for task, err in log.lost:  # chunks lost outside the refits (a killed worker) count as failed
        rows.extend((r, np.full(len(names), np.nan), f"lost: {err}", (), False) for r in task)
    rows.sort(key=lambda r: r[0])
    reps = pd.DataFrame(np.array([r[1] for r in rows]).reshape(len(rows), len(names)), columns=names,
                        index=pd.Index([r[0] for r in rows], name="rep"))
    errors = pd.Series({r[0]: r[2] for r in rows if r[2] is not None}, dtype=object)
    messages = Counter(m for r in rows for m in r[3])
    nonconv = sum(1 for r in rows if r[2] is None and not r[4])
    return BootstrapResult(t0=t0, replicates=reps, errors=errors, messages=dict(messages),
                           n_nonconverged=nonconv, seed=entropy, method=fit.method,
                           lme4=lme4_names(fit.name_map))


class BootstrapResult:
    """The refits of a parametric bootstrap.

    t0: the fit's estimates (fixed effects by name, then ``sd.<grp>``, ``cor.<grp>.<a>.<b>``,
    ``sigma``); replicates: one row per refit (NaN for a failed one); errors: the failed refits'
    errors by replicate; messages: the refits' convergence remarks with their counts;
    lme4: our names -> lme4's ``.sig01``/``.sigma``; seed: the seed that reproduces it.
    """

    def __init__(self, t0: pd.Series, replicates: pd.DataFrame, errors: pd.Series, messages: dict,
                 n_nonconverged: int, seed: int, method: str, lme4: dict):
        self.t0, self.replicates, self.errors = t0, replicates, errors
        self.messages, self.n_nonconverged, self.seed, self.method = messages, n_nonconverged, seed, method
        self.lme4 = lme4

    @property
    def nsim(self) -> int:
        """The number of refits asked for."""
        return len(self.replicates)

    @property
    def ok(self) -> pd.DataFrame:
        """The replicates whose refit succeeded."""
        return self.replicates.dropna(how="all")

    @property
    def n_ok(self) -> int:
        """Refits that gave estimates."""
        return len(self.ok)

    @property
    def n_failed(self) -> int:
        """Refits that raised (lme4's failed refits)."""
        return self.nsim - self.n_ok

    @property
    def mean(self) -> pd.Series:
        """Mean of each estimate over the successful refits."""
        return self.ok.mean()

    @property
    def bias(self) -> pd.Series:
        """Bootstrap bias: mean of the refits minus t0."""
        return self.mean - self.t0

    @property
    def sd(self) -> pd.Series:
        """Bootstrap standard deviation of each estimate (ddof = 1)."""
        return self.ok.std(ddof=1)

    def _parm(self, parm) -> list[str]:
        if parm is None:
            return list(self.t0.index)
        parm = [parm] if isinstance(parm, str) else list(parm)
        back = {v: k for k, v in self.lme4.items()}
        out = []
        for p in parm:
            name = back.get(p, p)
            if name not in self.t0.index:
                raise SpecError(f"parm: unknown parameter {p!r}; available: {', '.join(self.t0.index)} "
                                f"(or {', '.join(back)})")
            out.append(name)
        return out

    def confint(self, level: float = 0.95, kind: str = "perc", parm=None) -> pd.DataFrame:
        """Bootstrap confidence intervals, a DataFrame indexed by name with `lower`, `upper`.

        kind: "perc" (the quantiles of the refits, R's quantile type 7), "basic"
        (2 t0 minus those quantiles) or "norm" (t0 - bias ± z sd). parm: names (ours or lme4's
        ``.sig01``), default all."""
        if not 0 < level < 1:
            raise SpecError(f"level must be in (0, 1), got {level!r}")
        names = self._parm(parm)
        ok = self.ok[names]
        a = (1 - level) / 2
        if kind in ("perc", "basic"):
            lo, hi = ok.quantile(a), ok.quantile(1 - a)
            if kind == "basic":
                lo, hi = 2 * self.t0[names] - hi, 2 * self.t0[names] - lo
        elif kind == "norm":
            from scipy.stats import norm

            z = norm.ppf(1 - a)
            c = self.t0[names] - self.bias[names]
            lo, hi = c - z * self.sd[names], c + z * self.sd[names]
        else:
            raise SpecError(f"kind must be 'perc', 'basic' or 'norm', got {kind!r}")
        return pd.DataFrame({"lower": lo.to_numpy(float), "upper": hi.to_numpy(float)},
                            index=pd.Index(names, name="name"))

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Per parameter: estimate (t0), mean, bias, sd and the percentile interval."""
        ci = self.confint(level)
        return pd.DataFrame({"estimate": self.t0, "mean": self.mean, "bias": self.bias, "sd": self.sd,
                             "lower": ci["lower"], "upper": ci["upper"]}).rename_axis("name")

    def __repr__(self) -> str:
        head = (f"Parametric bootstrap ({self.method}): {self.nsim} refits, {self.n_ok} ok, "
                f"{self.n_failed} failed, {self.n_nonconverged} not converged; seed {self.seed}")
        return head + "\n" + self.summary().to_string(float_format=lambda v: f"{v:.4f}")
