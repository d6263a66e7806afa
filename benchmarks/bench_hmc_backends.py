"""HMC compile backends, cold and warm: what a user waits for in `gb.fit(..., method="hmc")`.

    python benchmarks/bench_hmc_backends.py --out docs/benchmarks-hmc-backends.md
    python benchmarks/bench_hmc_backends.py --per-call     # compile time and one log-density+gradient call

Each run is a fresh Python process (import included in "process s"). "Cold": empty PyTensor
and numba caches (a user's first fit of a new model); "warm": the same caches again, now
filled by the cold run. Per case and backend the cold run comes first, then `--warm` warm runs.
Reported: wall time of the process and of the fit call, the sampling part of it, minimum bulk
ESS over the fixed effects and the random-effect sds, ESS per second of the fit call, and
R-hat. PyMC's NUTS with glmmbayes' defaults (4 chains x 1000 draws, tune 1000, 2 processes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", None),
    "Contraception": ("use ~ age + I(age^2) + urban + livch + (1 | district)", "Contraception", "binomial"),
}

CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import arviz as az
import glmmbayes as gb
warnings.simplefilter("ignore")
formula, data, family, backend, seed = json.loads(sys.argv[1])
d = gb.datasets.load(data, derived=True)
t1 = time.perf_counter()
f = gb.fit(formula, d, family=family, method="hmc", seed=seed, progressbar=False, backend=backend)
t2 = time.perf_counter()
ess = az.ess(f.sampler.idata, method="bulk")
rhat = az.rhat(f.sampler.idata)
keys = [v for v in ess.data_vars if v.startswith(("beta", "sd_"))]
print("RESULT", json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1, "sample_s": f.sampler.seconds,
    "min_ess": min(float(ess[v].min()) for v in keys), "max_rhat": max(float(rhat[v].max()) for v in keys),
    "converged": bool(f.converged)}))
"""


def one_run(case: str, backend: str, caches: Path, seed: int) -> dict:
    formula, data, family = CASES[case]
    env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={caches / 'pytensor'}",
               NUMBA_CACHE_DIR=str(caches / "numba"))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps([formula, data, family, backend, seed])],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not line:
        raise RuntimeError(r.stderr[-3000:])
    out = json.loads(line[0][len("RESULT "):])
    out["process_s"] = wall
    return out


PER_CALL = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", "binomial"),
    "Contraception": ("use ~ age + I(age^2) + urban + livch + (1 | district)", "Contraception", "binomial"),
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian"),
    "grouseticks NB2": ("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", "grouseticks", "nbinom2"),
    "VerbAgg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "VerbAgg", "binomial"),
}


def per_call(calls: int = 500) -> str:
    """Seconds to compile the sampler's log density and gradient (in this process, with whatever
    the caches hold) and microseconds per call, C against numba, on the models above."""
    import numpy as np

    import glmmbayes as gb
    from glmmbayes.methods.hmc import compile_mode

    rows = ["| model | compile c (s) | compile numba (s) | call c (µs) | call numba (µs) |",
            "|---|---:|---:|---:|---:|"]
    for name, (formula, data, family) in PER_CALL.items():
        model = gb.to_pymc(gb.Spec(formula, family=family), gb.datasets.load(data, derived=True))
        out = {}
        for backend in ("c", "numba"):
            t0 = time.perf_counter()
            with compile_mode(backend):
                fn = model.logp_dlogp_function(ravel_inputs=True)
            fn.set_extra_values({})
            size = sum(int(np.prod(np.shape(v))) for v in model.initial_point().values())
            x = np.random.default_rng(0).normal(scale=0.3, size=size)
            fn(x)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(x)
            out[backend] = (compile_s, (time.perf_counter() - t0) / calls * 1e6)
        rows.append(f"| {name} | {out['c'][0]:.2f} | {out['numba'][0]:.2f} | {out['c'][1]:.0f} | {out['numba'][1]:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-call", action="store_true", help="compile time and cost per call, C against numba")
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--backends", nargs="+", default=["c", "numba"])
    ap.add_argument("--warm", type=int, default=2, help="warm runs after the cold one")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.per_call:
        print(per_call())
        return
    rows = []
    for case in a.cases:
        for backend in a.backends:
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(1 + a.warm):
                    res = one_run(case, backend, Path(tmp), a.seed)
                    res.update(case=case, backend=backend, cache="cold" if i == 0 else "warm")
                    rows.append(res)
                    print(json.dumps(res), flush=True)
    table = ["| case | backend | cache | process s | fit s | sampling s | min bulk ESS | ESS / fit s | max R-hat |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['case']} | {r['backend']} | {r['cache']} | {r['process_s']:.1f} | {r['fit_s']:.1f} | "
                     f"{r['sample_s']:.1f} | {r['min_ess']:.0f} | {r['min_ess'] / r['fit_s']:.0f} | {r['max_rhat']:.3f} |")
    text = "\n".join([
        "# HMC compile backends, cold and warm", "",
        f"Command: `python benchmarks/bench_hmc_backends.py{' --out ' + str(a.out) if a.out else ''}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; 4 chains x 1000 draws "
        "(tune 1000) on 2 processes, seed 1. Cold: empty PyTensor and numba caches; warm: the caches "
        "the cold run filled. Every run is a new process.", "", *table, ""])
    if a.out:
        a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
