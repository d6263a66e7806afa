"""Time glmmbayes beside lme4::glmer and glmmTMB and write docs/benchmarks.md.

    python benchmarks/run_benchmarks.py                # ours, beside the R times stored with the references
    python benchmarks/run_benchmarks.py --with-r       # and lme4/glmmTMB timed live in the same run

R is a benchmark tool only (Debian: r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-mlmrev).
Medians of wall time over repeated fits; ratios are ours / fastest peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import glmmbayes as gb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulated import SIMULATED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
R_SCRIPT = ROOT / "benchmarks" / "r" / "time_fits.R"

def _is_case(ref: dict) -> bool:
    """A reference with a fit to time: an lme4 Laplace block, or glmmTMB fits (negative binomial,
    GLMM REML); the REML and tolerance files hold only criteria."""
    return "formula" in ref and ("laplace" in ref or "glmmTMB" in ref.get("fits", {})
                                 or "glmmTMB_REML" in ref.get("fits", {}) or "glmmtmb_nb2" in ref)


REFERENCE_CASES = sorted(p.stem for p in REFERENCE.glob("*.json") if _is_case(json.loads(p.read_text())))


def time_ours(spec, data, reps: int, **kw):
    times, fit = [], None
    for _ in range(reps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit = gb.fit(spec, data, **kw)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), fit


def time_r(spec, data: pd.DataFrame, reps: int, nagq: int = 1) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        data.to_csv(csv, index=False)
        levels = {c: [str(x) for x in data[c].cat.categories] for c in data.columns
                  if isinstance(data[c].dtype, pd.CategoricalDtype)}
        job = {"csv": str(csv), "levels": levels, "formula": spec.formula, "family": spec.fam.name,
               "link": spec.fam.link.name, "nAGQ": nagq, "reps": reps, "glmmtmb": True,
               "REML": spec.reml}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        out = Path(tmp) / "out.json"
        r = subprocess.run(["Rscript", str(R_SCRIPT), str(Path(tmp) / "job.json"), str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(out.read_text())


def _case(case: str):
    """(spec, data, stored reference or None) for a reference case or a simulated set."""
    if case in SIMULATED:
        formula, family, data, *kw = SIMULATED[case]()
        return gb.Spec(formula, family=family, **(kw[0] if kw else {})), data, None
    ref = json.loads((REFERENCE / f"{case}.json").read_text())
    data = gb.datasets.load(ref["data"].removesuffix(".csv"), derived=True)
    family = "nbinom2" if "glmmtmb_nb2" in ref else ref["family"]
    reml = "glmmTMB_REML" in ref.get("fits", {})
    return gb.Spec(ref["formula"], family=family, link=ref.get("link"), REML=reml), data, _stored_times(ref)


def _stored_times(ref: dict) -> dict | None:
    """{"lme4": (seconds, logLik), "glmmtmb": (seconds, logLik)} recorded with a reference."""
    if "laplace" in ref:
        tmb = ref.get("glmmtmb", {})
        return {"lme4": (ref["laplace"]["median_s"], ref["laplace"]["logLik"]),
                "glmmtmb": (tmb.get("median_s"), tmb.get("logLik"))}
    fits = ref.get("fits", {})
    tmb = fits.get("glmmTMB_REML") or fits.get("glmmTMB") or ref.get("glmmtmb_nb2") or {}
    lme4 = fits.get("glmer.nb") or ref.get("glmer_nb") or {}
    sec = lambda b: b.get("median_s", (b.get("seconds") if not isinstance(b.get("seconds"), list) else None))  # noqa: E731
    return {"lme4": (sec(lme4), lme4.get("logLik")), "glmmtmb": (sec(tmb), tmb.get("logLik"))}


def run(with_r: bool, reps: int, cases: list[str], nagq: int = 1) -> list[dict]:
    rows = []
    for case in cases:
        spec, data, ref = _case(case)
        big = len(data) >= 50_000
        n_reps = 1 if big else reps  # R's fits of the big sets take minutes
        ours_reps = reps if not big else (1 if len(data) >= 500_000 else min(reps, 3))
        kw = {"method": "agq", "nAGQ": nagq} if nagq > 1 else {}
        peak0 = _peak_rss_mb()
        if nagq > 1:  # AGQ and our Laplace fit alternately, so that drift of the machine hits both
            pairs = [(time_ours(spec, data, 1, **kw), time_ours(spec, data, 1)[0]) for _ in range(ours_reps)]
            ours_s, fit = statistics.median(p[0][0] for p in pairs), pairs[-1][0][1]
            laplace_s = statistics.median(p[1] for p in pairs)
        else:
            ours_s, fit = time_ours(spec, data, ours_reps, **kw)
        row = {
            "case": case + (f" (nAGQ={nagq})" if nagq > 1 else ""),
            "n": fit.nobs,
            "ours_s": ours_s,
            "evals": fit.optimizer.nfev if fit.optimizer is not None else 0,
            "ours_loglik": fit.loglik,
            "lme4_s": None, "glmmtmb_s": None, "lme4_loglik": None,
            "peak_mb": max(_peak_rss_mb(), peak0),
            "source": "stored" if ref else "—",
        }
        if nagq > 1:  # the same data by our Laplace fit: what AGQ costs on top
            row["laplace_s"] = laplace_s
        if ref is not None and nagq == 1:
            row.update(lme4_s=ref["lme4"][0], glmmtmb_s=ref["glmmtmb"][0], lme4_loglik=ref["lme4"][1])
        if with_r:
            live = time_r(spec, data, n_reps, nagq)
            if live:
                row["lme4_s"] = live.get("lme4", {}).get("median_s")
                row["glmmtmb_s"] = live.get("glmmtmb", {}).get("median_s")
                row["lme4_loglik"] = live.get("lme4", {}).get("logLik")
                row["source"] = "same run"
        peers = [v for v in (row["lme4_s"], row["glmmtmb_s"]) if v]
        row["ratio"] = ours_s / min(peers) if peers else float("nan")
        rows.append(row)
        extra = f"  Laplace {row['laplace_s']:.3f}s" if nagq > 1 else ""
        print(f"{row['case']:34s} ours {ours_s:7.3f}s  lme4 {_f(row['lme4_s'])}  glmmTMB {_f(row['glmmtmb_s'])}  "
              f"ratio {row['ratio']:5.2f}  evals {row['evals']}{extra}", flush=True)
    return rows


def _f(v):
    return "   —   " if v is None else f"{v:7.3f}s"


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_markdown(rows: list[dict], command: str, path: Path, nagq: int = 1) -> None:
    src = {r["source"] for r in rows}
    what = ("Maximum-likelihood fits (Laplace unless the case says nAGQ; the sleepstudy LMM by ML; the "
            "`*_reml` cases and the other `*_lmm` sets by REML, lmer's default)" if nagq == 1
            else f"Adaptive Gauss-Hermite maximum likelihood with {nagq} knots (`method=\"agq\"`, lme4 "
                 f"`glmer(nAGQ = {nagq})`; glmmTMB has no AGQ)")
    lines = [
        "# Benchmarks" if nagq == 1 else "# AGQ benchmark",
        "",
        *(["Simulation studies (replicates/s serially and on 2 Dask workers): "
           "[benchmarks-studies.md](benchmarks-studies.md).", ""] if nagq == 1 else []),
        f"{what}, median wall time of "
        "repeated fits. Ratio = ours / fastest of lme4 and glmmTMB (below 1 means we are faster). "
        "`evals` counts objective evaluations (stage 1 + stage 2, including finite-difference "
        "gradients and the Hessian used for standard errors; stage 1 of the 1M-row fit runs on a subsample "
        "of whole groups, about 125k rows). Sets of 100k rows: ours 3 fits, R 1; "
        "1M rows: 1 fit each.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"peer times: {', '.join(sorted(src))} "
        "(stored = the medians recorded with the reference results on the same kind of machine).",
        "",
    ]
    agq = any("laplace_s" in r for r in rows)
    if agq:
        lines += ["`ours Laplace` is our Laplace fit of the same data in the same run; "
                  "`AGQ / Laplace` is what the quadrature costs relative to it.", ""]
    head = "| case | n | ours (s) | lme4 (s) | glmmTMB (s) | ratio | evals | logLik ours − lme4 | peak RSS (MB) |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if agq:
        head += " ours Laplace (s) | AGQ / Laplace |"
        rule += "---:|---:|"
    lines += [head, rule]
    for r in rows:
        lme4 = "—" if r["lme4_s"] is None else f"{r['lme4_s']:.3f}"
        tmb = "—" if r["glmmtmb_s"] is None else f"{r['glmmtmb_s']:.3f}"
        dll = "—" if r["lme4_loglik"] is None else f"{r['ours_loglik'] - r['lme4_loglik']:+.2e}"
        line = (f"| {r['case']} | {r['n']} | {r['ours_s']:.3f} | {lme4} | {tmb} | "
                f"{r['ratio']:.2f} | {r['evals']} | {dll} | {r['peak_mb']:.0f} |")
        if agq:
            line += f" {r['laplace_s']:.3f} | {r['ours_s'] / r['laplace_s']:.2f} |"
        lines.append(line)
    if agq:
        lines += ["", "lme4's nAGQ > 1 logLik leaves out the saturated model's log-likelihood Σ log p(y | μ = y) "
                  "(binomial with trials > 1, cbpp: −41.98; Poisson, e.g. mlmRev's Mmmec: −797.52; 0 for 0/1 "
                  "data), so there the logLik difference is that constant; glmmbayes reports the fully "
                  "normalized value."]
    if path.name == "benchmarks.md":
        lines += _companions(path.parent)
    path.write_text("\n".join(lines) + "\n")


def _companions(folder: Path) -> list[str]:
    """The companion benchmarks (notes on the run, the 1M-row sweep ratio, families, AGQ, HMC),
    recorded in benchmarks.md from their own files."""
    lines = []
    for extra, title in (("benchmarks-notes.md", "Reading the table"),
                         ("benchmarks-sweep.md", "1M rows against one numpy sweep"),
                         ("benchmarks-families.md", "Negative binomial, non-canonical links, GLMM REML"),
                         ("benchmarks-agq.md", "Adaptive Gauss-Hermite quadrature (nAGQ = 25)"),
                         ("benchmarks-hmc.md", "HMC against bambi"),
                         ("benchmarks-hmc-backends.md", "HMC compile backends, cold and warm")):
        f = folder / extra
        if f.exists():
            body = [ln for ln in f.read_text().splitlines() if not ln.startswith("# ")]
            lines += ["", f"## {title}", "", f"(from `docs/{extra}`)", *body]
    return lines


def refresh_companions(path: Path) -> None:
    """Rewrite the companion sections of benchmarks.md, keeping its own table (after a companion run)."""
    text = path.read_text()
    cut = text.find("\n## ")
    main = text if cut < 0 else text[:cut]
    path.write_text(main.rstrip("\n") + "\n" + "\n".join(_companions(path.parent)) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-r", action="store_true", help="time lme4 and glmmTMB live (needs Rscript)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cases", nargs="*", default=REFERENCE_CASES,
                    help=f"reference cases and/or simulated sets: {', '.join(SIMULATED)}")
    ap.add_argument("--simulated", action="store_true", help="add the simulated sets (100k and 1M rows)")
    ap.add_argument("--nagq", type=int, default=1, help="AGQ order (nAGQ > 1 times method='agq')")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)
    cases = list(args.cases) + ([c for c in SIMULATED if c not in args.cases] if args.simulated else [])
    rows = run(args.with_r, args.reps, cases, args.nagq)
    command = "python " + " ".join(["benchmarks/run_benchmarks.py"] + (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    write_markdown(rows, command, out, args.nagq)
    print(f"wrote {args.out}")
    main_doc = out.parent / "benchmarks.md"
    if out.name != "benchmarks.md" and main_doc.exists():
        refresh_companions(main_doc)
        print(f"updated the companion sections of {main_doc}")


if __name__ == "__main__":
    main()
