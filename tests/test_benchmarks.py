"""The benchmark script runs (without R) and writes its tables; the simulated sets are fixed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def test_simulated_sets_are_reproducible():
    sim = _module("simulated")
    formula, family, d = sim.nested_binary_2k()
    assert family == "binomial" and "(1 | community/mother)" in formula
    assert len(d) == 2000 and d["community"].nunique() == 160
    assert d.groupby(["community", "mother"], observed=True).ngroups == 1600
    again = sim.nested_binary_2k()[2]
    assert d.equals(again)
    _, _, b = sim.binary_100k()
    assert b.shape == (100_000, 6) and b["g"].nunique() == 2000


def test_run_and_write_tables(tmp_path):
    rb = _module("run_benchmarks")
    rows = rb.run(with_r=False, reps=1, cases=["cbpp_herd"])
    assert rows[0]["lme4_s"] is not None  # the stored R time of the reference
    agq_rows = rb.run(with_r=False, reps=1, cases=["cbpp_herd"], nagq=5)
    assert agq_rows[0]["laplace_s"] > 0 and "nAGQ=5" in agq_rows[0]["case"]
    (tmp_path / "benchmarks-hmc.md").write_text("# HMC\n\nhmc table\n")
    rb.write_markdown(agq_rows, "cmd agq", tmp_path / "benchmarks-agq.md", nagq=5)
    rb.write_markdown(rows, "cmd main", tmp_path / "benchmarks.md")
    main = (tmp_path / "benchmarks.md").read_text()
    assert "| cbpp_herd |" in main and "AGQ / Laplace" in main and "hmc table" in main
    assert np.isfinite(rows[0]["ratio"])
    # a later companion run refreshes its section and keeps the main table
    rb.write_markdown(agq_rows, "cmd agq again", tmp_path / "benchmarks-agq.md", nagq=5)
    rb.refresh_companions(tmp_path / "benchmarks.md")
    main2 = (tmp_path / "benchmarks.md").read_text()
    assert "cmd agq again" in main2 and "cmd main" in main2 and main2.count("## HMC against bambi") == 1
