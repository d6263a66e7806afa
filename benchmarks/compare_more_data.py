"""glmmbayes against lme4 on data sets beyond the reference suite.

    python benchmarks/compare_more_data.py            # runs benchmarks/r/lme4_more_data.R (needs R, lme4, mlmRev)

Reads the data as CSV with R's factor levels (ordered factors as ordered Categoricals) and prints,
per fit: logLik difference (ours - lme4; AGQ: lme4's nAGQ > 1 logLik leaves out the saturated
log-likelihood), the largest relative difference of the fixed effects and of their standard
errors, θ, our convergence messages, and the time ratio ours / lme4 (medians of five fits each,
in the same sitting).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import glmmbayes as gb

HERE = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["Rscript", str(HERE / "r" / "lme4_more_data.R"), tmp], check=True)
        fits = json.loads((Path(tmp) / "fits.json").read_text())
        worst = 0.0
        for key, r in fits.items():
            d = pd.read_csv(Path(tmp) / f"{r['data']}.csv")
            for col, info in (r.get("levels") or {}).items():
                lv = info["levels"] if isinstance(info["levels"], list) else [info["levels"]]
                d[col] = pd.Categorical(d[col].astype(str), categories=[str(x) for x in lv], ordered=bool(info["ordered"]))
            kw = {"family": r["family"], "link": r["link"]}
            if r["family"] == "gaussian":
                kw["REML"] = False
            if r["link"] not in ("logit", "log", "identity"):
                kw["laplace"] = "expected"  # lme4's Laplace for a non-canonical link
            if r["nAGQ"] == 0:
                kw["nAGQ"] = 0
            elif r["nAGQ"] > 1:
                kw.update(method="agq", nAGQ=r["nAGQ"])
            times = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(5):
                    t0 = time.perf_counter()
                    f = gb.fit(r["formula"], d, **kw)
                    times.append(time.perf_counter() - t0)
            fe = dict(zip(f.fixef.index, f.fixef.values))
            dfe = max(abs(fe[k] - v) / max(1.0, abs(v)) for k, v in r["fixef"].items())
            dse = float(np.max(np.abs(np.asarray(f.se, float) - np.array(r["se"])) / np.array(r["se"])))
            dll = f.loglik - r["logLik"]
            if r["nAGQ"] <= 1:
                worst = max(worst, -dll)
            print(f"{key:18s} logLik ours - lme4 {dll:+.2e}  fixef {dfe:.1e}  se {dse:.1e}  "
                  f"theta {np.round(f.theta_hat, 4)} (lme4 {np.round(r['theta'], 4)})  "
                  f"time {statistics.median(times) / r['median_s']:.2f} of lme4  {'; '.join(f.messages) or 'ok'}")
        print(f"largest shortfall of our logLik below lme4's (Laplace, nAGQ = 0, LMM): {max(worst, 0.0):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
