"""`Study`: a declarative simulation study -- simulate data at each design point, fit every
method, compare with the truth -- run serially, in local processes or on a Dask cluster, with
every finished chunk written to a store so that an interrupted study resumes.

Every replicate's random numbers come from its own seed, a function of the study's seed, the
design point and the replicate number only, so a study gives bit-identical results however and
wherever its chunks run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import methods as method_table
from ..errors import SpecError
from ..spec import Spec
from .result import COLUMNS, StudyResult
from .runner import run_tasks
from .store import Store

QuantityRow = tuple  # (quantity, term, estimate, se_or_sd, lower, upper)


def point_key(point: Mapping[str, Any]) -> list[int]:
    """Four 32-bit words identifying a design point by its values (not by its place in the
    grid), so that a replicate's seed survives a reordered or extended grid."""
    text = json.dumps({k: point[k] for k in sorted(point)}, sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def default_replicate_seed(seed: int, point: Mapping[str, Any], rep: int) -> np.random.SeedSequence:
    """The seed of replicate `rep` at `point`: SeedSequence([seed, *point_key(point), rep])."""
    return np.random.SeedSequence([int(seed), *point_key(point), int(rep)])


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v  # numpy scalars: same seed as Python's


def expand_grid(grid) -> list[dict]:
    """The design points: the Cartesian product of a dict of value lists (in key order), a list
    of dicts as given, or one empty point when there is no grid. Numpy scalars become Python
    numbers (a point's seed depends on its values, not on their types)."""
    if grid is None or (isinstance(grid, Mapping) and not grid):
        return [{}]
    if isinstance(grid, Mapping):
        names = list(grid)
        values = []
        for k in names:
            v = grid[k]
            v = list(v) if isinstance(v, (list, tuple, range, np.ndarray, pd.Index)) else [v]
            if not v:
                raise SpecError(f"grid: no values for {k!r}")
            values.append([_plain(x) for x in v])
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]
    points = [{k: _plain(x) for k, x in dict(p).items()} for p in grid]
    if not points:
        raise SpecError("grid: an empty list of design points")
    if any(set(p) != set(points[0]) for p in points):
        raise SpecError("grid: every design point must name the same parameters")
    return points


def _interval(est, se, level):
    if se is None or not np.isfinite(se):
        return np.nan, np.nan
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    return est - z * se, est + z * se


def default_quantities(fit, point: Mapping[str, Any], level: float = 0.95) -> list[QuantityRow]:
    """The rows a study records from one fit: each fixed effect (estimate, standard error and
    Wald interval; posterior mean, sd and equal-tailed interval for hmc), each random-effect sd
    and correlation and the residual sd (estimate; posterior sd and interval for hmc)."""
    from ..quantities import varcorr_rows

    post = _posterior_draws(fit) if fit.idata is not None else {}
    rows = []
    se = fit.se
    for name, est in fit.fixef.items():
        key = ("fixef", str(name))
        if key in post:
            rows.append((*key, float(est), *_draw_stats(post[key], level)))
        else:
            s = float(se[name])
            rows.append((*key, float(est), s, *_interval(float(est), s, level)))
    for quantity, term, _, value in varcorr_rows(fit.varcorr):
        key = (quantity, term)
        if key in post:
            rows.append((*key, value, *_draw_stats(post[key], level)))
        else:
            rows.append((*key, value, np.nan, np.nan, np.nan))
    return rows


def _draw_stats(x, level):
    x = np.asarray(x, float)
    lo, hi = np.quantile(x, [0.5 - level / 2, 0.5 + level / 2])
    return float(np.std(x, ddof=1)), float(lo), float(hi)


def _posterior_draws(fit) -> dict:
    """Posterior draws of the fixed effects, sds and correlations under the study's names."""
    from ..posterior import draws

    idata, d = fit.idata, fit.design
    out = {}
    B = draws(idata, "beta") if d.p else None
    for j, nm in enumerate(d.fixef_names):
        out[("fixef", str(nm))] = B[:, j]
    if d.spec.re_dist is None:
        for t in d.terms:
            g = t.group_name
            S = draws(idata, f"sd_{g}")
            for j, c in enumerate(t.coef_names):
                out[("sd", g if list(t.coef_names) == ["(Intercept)"] else f"{g}.{c}")] = S[:, j]
            if t.k > 1:
                R = draws(idata, f"cor_{g}")
                for a in range(t.k):
                    for b in range(a + 1, t.k):
                        out[("cor", f"{g}.{t.coef_names[a]}.{t.coef_names[b]}")] = R[:, b, a]
    return out


@dataclass
class Study:
    """A simulation study.

    simulate: ``(rng, **point) -> DataFrame``, one data set at a design point.
    spec: the `Spec` fitted to every data set, or a dict method label -> Spec.
    methods: method names (``["pql", "laplace", "agq"]``) or ``{label: dict(method=..., **options)}``.
    truth: ``(**point) -> {"fixef": {name: value}, "sd": {term: value}, "cor": {...}, "sigma": value}``
        with fixed-effect names and variance-component terms as in `glmmbayes.quantities`
        (``herd`` for an intercept-only term, ``herd.x`` otherwise).
    grid: dict name -> values (all combinations) or a list of dicts; None for a single point.
    n_rep: replicates per design point; seed: the study's seed.
    chunk_size: replicates per chunk (the unit of work and of storage; default 10).
    extract: ``(fit, point) -> [(quantity, term, estimate, se_or_sd, lower, upper), ...]``
        (default `default_quantities`); level: the interval level of the default extraction.
    replicate_seed: ``(seed, point, rep) -> SeedSequence`` (default `default_replicate_seed`).

    Methods that take a ``seed`` option and were not given one get one drawn from the
    replicate's generator after the data are simulated.
    """

    simulate: Callable[..., pd.DataFrame]
    spec: Spec | Mapping[str, Spec]
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]]
    truth: Callable[..., Mapping] | None = None
    grid: Mapping[str, Sequence] | Sequence[Mapping] | None = None
    n_rep: int = 100
    seed: int = 0
    chunk_size: int = 10
    extract: Callable | None = None
    level: float = 0.95
    replicate_seed: Callable | None = None
    name: str = "study"
    points: list[dict] = field(init=False, repr=False)
    fits: dict[str, tuple[str, dict]] = field(init=False, repr=False)

    def __post_init__(self):
        if not callable(self.simulate):
            raise SpecError(f"simulate must be a function (rng, **point) -> DataFrame, got {self.simulate!r}")
        if self.truth is not None and not callable(self.truth):
            raise SpecError(f"truth must be a function (**point) -> dict, got {self.truth!r}")
        for nm in ("n_rep", "chunk_size"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SpecError(f"{nm} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise SpecError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 0 < self.level < 1:
            raise SpecError(f"level must be in (0, 1), got {self.level!r}")
        self.points = expand_grid(self.grid)
        self.fits = _normalize_methods(self.methods)
        if isinstance(self.spec, Mapping):
            for label in self.fits:
                if label not in self.spec and self.fits[label][0] not in self.spec:
                    raise SpecError(f"spec: no Spec for method {label!r} (the dict names {', '.join(self.spec)})")
        elif not isinstance(self.spec, Spec):
            raise SpecError(f"spec must be a glmmbayes.Spec or a dict method -> Spec, got {type(self.spec).__name__}")

    # ------------------------------------------------------------------ one replicate
    def spec_for(self, label: str) -> Spec:
        """The Spec fitted by method `label`."""
        if isinstance(self.spec, Mapping):
            return self.spec[label] if label in self.spec else self.spec[self.fits[label][0]]
        return self.spec

    def seed_of(self, point: Mapping[str, Any], rep: int) -> np.random.SeedSequence:
        """The SeedSequence of replicate `rep` at `point`."""
        fn = self.replicate_seed or default_replicate_seed
        return fn(self.seed, point, rep)

    def run_replicate(self, pid: int, rep: int) -> list[dict]:
        """Simulate and fit one replicate: its rows (one per method and quantity; a failed fit or
        simulation gives one row per method with its error)."""
        from ..api import run_method
        from ..design import build_design

        point = self.points[pid]
        rng = np.random.default_rng(self.seed_of(point, rep))
        base = {"_pid": pid, "rep": rep}
        try:
            data = self.simulate(rng, **point)
        except Exception as e:  # noqa: BLE001 -- recorded, never fatal
            return [_failed(base, label, f"simulate: {type(e).__name__}: {e}", 0.0) for label in self.fits]
        seeds = {label: int(rng.integers(2**31)) for label, (m, o) in self.fits.items()
                 if o.get("seed") is None and "seed" in _option_names(m)}
        designs: dict[int, Any] = {}
        extract = self.extract or (lambda fit, pt: default_quantities(fit, pt, self.level))
        rows = []
        for label, (method, opts) in self.fits.items():
            t0 = time.perf_counter()
            try:
                spec = self.spec_for(label)
                if id(spec) not in designs:
                    designs[id(spec)] = build_design(spec, data)
                fit = run_method(designs[id(spec)], method, {**opts, **({"seed": seeds[label]} if label in seeds else {})})
                found = extract(fit, point)
            except Exception as e:  # noqa: BLE001 -- recorded, never fatal
                rows.append(_failed(base, label, f"{type(e).__name__}: {e}", time.perf_counter() - t0))
                continue
            secs = time.perf_counter() - t0
            message = None if fit.converged else ("; ".join(fit.messages) or "did not converge")
            for q, term, est, se, lo, hi in found:
                rows.append({**base, "method": label, "quantity": q, "term": term, "estimate": float(est),
                             "se_or_sd": float(se), "lower": float(lo), "upper": float(hi),
                             "converged": bool(fit.converged), "seconds": secs, "error": None, "message": message})
        return rows

    # ------------------------------------------------------------------ the whole study
    def manifest(self) -> dict:
        """What identifies this study in a store (n_rep may grow between runs)."""
        return {"name": self.name, "seed": int(self.seed), "points": self.points,
                "methods": {k: [m, {o: repr(v) for o, v in sorted(opts.items())}] for k, (m, opts) in self.fits.items()},
                "level": self.level}

    def truth_table(self) -> pd.DataFrame:
        """The true values per design point: point columns, quantity, term, truth."""
        rows = []
        if self.truth is not None:
            for pid, point in enumerate(self.points):
                t = self.truth(**point) or {}
                for quantity, vals in t.items():
                    if quantity == "sigma" and not isinstance(vals, Mapping):
                        vals = {"Residual": vals}
                    if not isinstance(vals, Mapping):
                        raise SpecError(f"truth: {quantity!r} must map term names to values, got {vals!r}")
                    for term, v in vals.items():
                        rows.append({"_pid": pid, "quantity": quantity, "term": str(term), "truth": float(v)})
        return pd.DataFrame(rows, columns=["_pid", "quantity", "term", "truth"])

    def tasks(self, done: set[tuple[int, int]] = frozenset()) -> list[tuple[int, tuple[int, ...]]]:
        """Chunks of replicates not yet done: (point index, replicate numbers)."""
        out = []
        for pid in range(len(self.points)):
            todo = [r for r in range(self.n_rep) if (pid, r) not in done]
            for a in range(0, len(todo), self.chunk_size):
                out.append((pid, tuple(todo[a:a + self.chunk_size])))
        return out

    def run(self, store: str | None = None, client=None, processes: int | None = None,
            progress: bool = True, max_chunks: int | None = None) -> StudyResult:
        """Run the replicates not yet in `store` and return every stored one as a `StudyResult`.

        store: a folder (Parquet, one file per chunk); None keeps the results in memory only.
        client: a ``dask.distributed.Client`` to run the chunks on its workers; otherwise
        `processes` local processes (None: all CPUs, 1: in this process).
        progress: a tqdm bar (notebook widget or terminal line) with replicates/s and ETA.
        max_chunks: stop after this many chunks (the rest run on the next call).
        """
        st = Store(store) if store is not None else None
        frames = []
        if st is not None:
            st.check_manifest(self.manifest())
            old = st.read()
            if old is not None:
                frames.append(old[old["rep"] < self.n_rep])
        done = set()
        for f in frames:
            done |= set(zip(f["_pid"].astype(int), f["rep"].astype(int)))
        tasks = self.tasks(done)

        def on_result(task, rows):
            frame = _frame(rows, self.points)
            if st is not None:
                pid, reps = task
                st.write_chunk(f"p{pid:05d}-r{reps[0]:07d}-{reps[-1]:07d}", frame)
            frames.append(frame)
            return len(task[1])

        log = run_tasks(_run_chunk, self, tasks, on_result, client=client, processes=processes,
                        progress=progress, total=len(self.points) * self.n_rep, initial=len(done),
                        desc=self.name, max_tasks=max_chunks)
        reps = pd.concat(frames, ignore_index=True) if frames else _frame([], self.points)
        return StudyResult.from_study(self, reps, lost=log.lost)


def _run_chunk(study: Study, task) -> list[dict]:
    pid, reps = task
    rows = []
    for rep in reps:
        rows += study.run_replicate(pid, rep)
    return rows


def _failed(base, label, error, secs):
    return {**base, "method": label, "quantity": None, "term": None, "estimate": np.nan, "se_or_sd": np.nan,
            "lower": np.nan, "upper": np.nan, "converged": False, "seconds": secs, "error": error, "message": None}


def _frame(rows: list[dict], points: list[dict]) -> pd.DataFrame:
    """Rows as a frame with fixed column types (so that chunk files concatenate cleanly)."""
    f = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("_pid", "rep"):
        f[c] = f[c].astype("int64")
    for c in ("estimate", "se_or_sd", "lower", "upper", "seconds"):
        f[c] = f[c].astype("float64")
    f["converged"] = f["converged"].astype(bool)
    for c in ("method", "quantity", "term", "error", "message"):
        f[c] = f[c].astype(object)
    return f


def _option_names(method: str) -> set[str]:
    return {o.name for o in method_table.get(method).options}


def _normalize_methods(methods) -> dict[str, tuple[str, dict]]:
    if isinstance(methods, str):
        methods = [methods]
    out: dict[str, tuple[str, dict]] = {}
    if isinstance(methods, Mapping):
        for label, cfg in methods.items():
            cfg = dict(cfg)
            if "method" not in cfg:
                raise SpecError(f"methods[{label!r}]: give the method, e.g. dict(method='laplace', ...)")
            m = cfg.pop("method")
            method_table.get(m)
            method_table.checked_options(m, cfg)  # a misspelt option fails here, not in every replicate
            out[str(label)] = (m, cfg)
    else:
        for m in methods:
            method_table.get(m)
            if m in out:
                raise SpecError(f"methods: {m!r} given twice (use a dict of labels for two settings)")
            out[m] = (m, {})
    if not out:
        raise SpecError("methods: give at least one method")
    return out

