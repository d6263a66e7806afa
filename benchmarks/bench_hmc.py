"""HMC benchmark: glmmbayes method="hmc" vs bambi (default sampler settings) with matched priors.

Metric: minimum bulk ESS over the fixed effects and the random-effect sd, divided by the wall
time of the whole call (model build, PyTensor compilation, for glmmbayes also the Laplace start,
the MAP and the pointwise log-likelihood; then tuning and sampling). Each tool is run once
untimed with few draws first, so both find PyTensor's on-disk compilation cache in the same state.

bambi is not a dependency of glmmbayes (it pins arviz-plots that fails under matplotlib 3.11), so
run this in a separate environment that has both:

    python -m venv .bambi-env
    .bambi-env/bin/pip install bambi "matplotlib<3.11"
    .bambi-env/bin/pip install -e .
    .bambi-env/bin/python benchmarks/bench_hmc.py [--cold] --out docs/benchmarks-hmc-table.md

Without bambi importable, only glmmbayes is measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

import glmmbayes as gb
from glmmbayes.design import build_design
from glmmbayes.priors import resolve_priors

CASES = {
    "cbpp": dict(
        formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
        bambi="p(incidence, size) ~ period + (1|herd)",
        family="binomial",
        group="herd",
    ),
    "Contraception": dict(
        formula="use ~ age + I(age^2) + urban + livch + (1|district)",
        bambi="use['Y'] ~ age + age2 + urban + livch + (1|district)",
        family="bernoulli",
        group="district",
    ),
}


def min_ess(idata, names):
    import arviz as az

    ess = az.ess(idata, var_names=names, method="bulk")
    return float(min(np.nanmin(ess[v].values) for v in names))


def run_ours(name, data, draws, tune, chains, seed):
    c = CASES[name]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = gb.fit(c["formula"], data, family="binomial", method="hmc", draws=draws, tune=tune, chains=chains, seed=seed)
    wall = time.perf_counter() - t0
    names = ["beta", f"sd_{c['group']}"]
    ndiv = int(fit.idata.sample_stats["diverging"].sum())
    rhat = fit.sampler.diagnostics.max_rhat
    return wall, min_ess(fit.idata, names), ndiv, rhat, fit


def bambi_priors(name, data):
    """bambi priors equal to glmmbayes' defaults (both put the intercept prior on the centred basis)."""
    import bambi as bmb

    c = CASES[name]
    d = build_design(gb.Spec(c["formula"], family="binomial"), data)
    p = resolve_priors(d)
    out = {"Intercept": bmb.Prior("Normal", mu=0.0, sigma=p.fixef["(Intercept)"].args[1])}
    groups = {"cbpp": {"period": ["period2", "period3", "period4"]},
              "Contraception": {"age": ["age"], "age2": ["I(age^2)"], "urban": ["urbanY"],
                                "livch": ["livch1", "livch2", "livch3+"]}}[name]
    for term, cols in groups.items():
        s = np.array([p.fixef[cn].args[1] for cn in cols])
        out[term] = bmb.Prior("Normal", mu=0.0, sigma=s if len(s) > 1 else float(s[0]))
    sdp = p.sd[(c["group"], "(Intercept)")]
    out[f"1|{c['group']}"] = bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfStudentT", nu=sdp.args[0], sigma=sdp.args[1]))
    return out


def run_bambi(name, data, draws, tune, chains, seed):
    import bambi as bmb

    c = CASES[name]
    df = data.copy()
    if name == "Contraception":
        df["age2"] = df["age"] ** 2
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(c["bambi"], df, family=c["family"], priors=bambi_priors(name, data))
        idata = model.fit(draws=draws, tune=tune, chains=chains, cores=min(2, chains), random_seed=seed,
                          progressbar=False)
    wall = time.perf_counter() - t0
    post = idata.posterior
    fixed = [v for v in post.data_vars if not v.startswith("1|") and v not in ("p", "mu")
             and "obs" not in "".join(post[v].dims)]
    names = fixed + [f"1|{c['group']}_sigma"]
    ndiv = int(idata.sample_stats["diverging"].sum())
    import arviz as az

    rhat = float(max(np.nanmax(az.rhat(idata, var_names=names)[v].values) for v in names))
    means = {v: post[v].mean(("chain", "draw")).values for v in fixed}
    return wall, min_ess(idata, names), ndiv, rhat, means


def measure(a, have_bambi, bver, warmup: bool):
    rows = []
    for name in a.cases:
        data = gb.datasets.load(name)
        if a.only in (None, "ours"):
            if warmup:
                run_ours(name, data, 50, 50, a.chains, a.seed)  # warm the compilation cache
            w, e, nd, rh, fit = run_ours(name, data, a.draws, a.tune, a.chains, a.seed)
            rows.append((name, "glmmbayes hmc", w, e, e / w, nd, rh))
            print(rows[-1], flush=True)
            print(" glmmbayes beta:", np.round(fit.beta_hat, 4).tolist(), flush=True)
        if have_bambi and a.only in (None, "bambi"):
            if warmup:
                run_bambi(name, data, 50, 50, a.chains, a.seed)
            w, e, nd, rh, means = run_bambi(name, data, a.draws, a.tune, a.chains, a.seed)
            rows.append((name, f"bambi {bver} (matched priors, default NUTS init)", w, e, e / w, nd, rh))
            print(rows[-1], flush=True)
            print(" bambi means:", {k: np.round(v, 4).tolist() for k, v in means.items()}, flush=True)
    return rows


def cold_rows(a) -> list:
    """Each tool in a process of its own with empty PyTensor and numba caches, no warm-up run:
    what a user's first fit of a new model costs."""
    import json
    import subprocess
    import sys
    import tempfile

    rows = []
    for tool in ("ours", "bambi"):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={tmp}/pytensor", NUMBA_CACHE_DIR=f"{tmp}/numba")
            cmd = [sys.executable, __file__, "--only", tool, "--child", "--draws", str(a.draws), "--tune", str(a.tune),
                   "--chains", str(a.chains), "--seed", str(a.seed), "--cases", *a.cases]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            print(r.stdout, flush=True)
            rows += [tuple(json.loads(ln[4:])) for ln in r.stdout.splitlines() if ln.startswith("ROW ")]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--cold", action="store_true", help="empty compile caches, no warm-up, a process per tool")
    ap.add_argument("--only", choices=["ours", "bambi"], default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    a = ap.parse_args()
    try:
        import bambi

        have_bambi = True
        bver = bambi.__version__
    except Exception as e:  # noqa: BLE001
        have_bambi, bver = False, f"not importable ({type(e).__name__})"
    import pymc

    if a.child:
        import json

        for r in measure(a, have_bambi, bver, warmup=False):
            print("ROW " + json.dumps(list(r)), flush=True)
        return
    rows = cold_rows(a) if a.cold else measure(a, have_bambi, bver, warmup=True)
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.python_version()}, pymc {pymc.__version__}; "
        f"{a.chains} chains x {a.draws} draws (tune {a.tune}), seed {a.seed}, cores = min(2, chains); bambi: {bver}; "
        + ("cold: each tool in a new process with empty compile caches, no warm-up" if a.cold
           else "warm: each tool's compile cache filled by an untimed 50-draw run first"),
        "",
        "| data | sampler | wall s | min bulk ESS | min bulk ESS / s | divergences | max R-hat |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.0f} | {r[4]:.1f} | {r[5]} | {r[6]:.3f} |")
    for name in a.cases:
        sub = {r[1].split()[0]: r[4] for r in rows if r[0] == name}
        if "bambi" in sub:
            lines.append(f"\n{name}: glmmbayes / bambi ESS-per-second ratio = {sub['glmmbayes'] / sub['bambi']:.2f}")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
