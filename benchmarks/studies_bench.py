"""Simulation-study throughput: replicates per second serially, in 2 local processes and on a
dask.distributed LocalCluster with 2 worker processes, for the same study (whose summaries must
be identical in all three).

The study: a binary random-intercept model (30 clusters of 4, one covariate) fitted by PQL,
Laplace and AGQ in every replicate (glmmbayes.studies.Study). The cluster's start-up is timed
apart from the run.

    python benchmarks/studies_bench.py --n-rep 120 --out docs/benchmarks-studies.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import glmmbayes as gb  # noqa: E402


def simulate_binary(rng, q, sd, m=4):
    g = np.repeat(np.arange(q), m)
    x = rng.standard_normal(q * m)
    eta = -0.5 + x + rng.normal(0.0, sd, q)[g]
    y = (rng.random(q * m) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"c{j:03d}" for j in g]})


def make_study(n_rep: int) -> gb.Study:
    return gb.Study(simulate=simulate_binary, spec=gb.Spec("y ~ x + (1 | g)", family="binomial"),
                    methods=["pql", "laplace", "agq"],
                    truth=lambda q, sd: {"fixef": {"(Intercept)": -0.5, "x": 1.0}, "sd": {"g": sd}},
                    grid={"q": [30], "sd": [1.0]}, n_rep=n_rep, seed=2024, chunk_size=5, name="binary")


def measure(n_rep: int) -> list[dict]:
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this script
    rows, summaries = [], {}
    load_before = os.getloadavg()[0]
    for label, kw in (("serial (1 process)", {"processes": 1}), ("2 local processes", {"processes": 2})):
        t0 = time.perf_counter()
        res = make_study(n_rep).run(progress=False, **kw)
        secs = time.perf_counter() - t0
        rows.append({"mode": label, "seconds": secs, "startup": 0.0})
        summaries[label] = res.summary()
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: __import__("glmmbayes"))  # import the package on the workers before timing
        # and a few replicates untimed: the local processes fork from this process, which has
        # already fitted (first-call costs paid); the workers pay theirs here, in the start-up
        make_study(4).run(client=client, progress=False)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = make_study(n_rep).run(client=client, progress=False)
        secs = time.perf_counter() - t1
    rows.append({"mode": "Dask LocalCluster, 2 workers", "seconds": secs, "startup": startup})
    summaries["dask"] = res.summary()
    first = next(iter(summaries.values()))
    identical = all(s.equals(first) for s in summaries.values())
    for r in rows:
        r["reps"] = n_rep
        r["rate"] = n_rep / r["seconds"]
        r["identical"] = identical
        r["load"] = (load_before, os.getloadavg()[0])
    return rows


def write_markdown(rows: list[dict], command: str, path: Path) -> None:
    base = rows[0]["rate"]
    lines = [
        "# Simulation studies: throughput",
        "",
        "Replicates per second of one study run serially, in 2 local processes and on a "
        "`dask.distributed.LocalCluster` with 2 worker processes (1 thread each). Each replicate simulates "
        "a binary random-intercept data set (30 clusters of 4 observations, one covariate) and fits it by "
        "PQL, Laplace and AGQ (25 points). Chunks of 5 replicates. The cluster's start-up (including "
        "importing glmmbayes on the workers and a 4-replicate warm-up run, whose first-call costs the "
        "forked local processes inherit already paid) is timed apart.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} cores (shared), Python {platform.python_version()}, {platform.machine()}; "
        f"1-minute load average {rows[0]['load'][0]:.1f} before and {rows[0]['load'][1]:.1f} after the run "
        "(other work on the same cores limits the speed-up of two workers).",
        "",
        "| mode | replicates | wall (s) | replicates/s | speed-up | start-up (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['reps']} | {r['seconds']:.1f} | {r['rate']:.2f} | "
                     f"{r['rate'] / base:.2f} | {r['startup']:.1f} |")
    lines += ["", "The three summaries (bias, RMSE, coverage per method and parameter) are "
              + ("bit-identical." if rows[0]["identical"] else "**not** identical (a bug: please report).")]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-rep", type=int, default=120)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    args = ap.parse_args(argv)
    rows = measure(args.n_rep)
    for r in rows:
        print(f"{r['mode']:<32} {r['seconds']:7.1f} s  {r['rate']:6.2f} rep/s  start-up {r['startup']:.1f} s")
    if args.out:
        command = "python " + " ".join(["benchmarks/studies_bench.py"] + (argv if argv is not None else sys.argv[1:]))
        write_markdown(rows, command, Path(args.out))


if __name__ == "__main__":
    main()
