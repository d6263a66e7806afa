"""The simulation-study engine: deterministic replicates, resume, Dask, failures recorded, and the
summary statistics checked against direct computation."""

import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes.errors import SpecError
from glmmbayes.studies import Study, run_study_from_file

# Dask worker processes cannot import this test module: ship its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BETA = {"(Intercept)": -0.5, "x": 1.0}


def simulate_binary(rng, q, sd, m=4):
    g = np.repeat(np.arange(q), m)
    x = rng.standard_normal(q * m)
    u = rng.normal(0.0, sd, q)
    eta = BETA["(Intercept)"] + BETA["x"] * x + u[g]
    y = (rng.random(q * m) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"c{j:03d}" for j in g]})


def simulate_with_failure(rng, q, sd):
    d = simulate_binary(rng, q, sd)
    if rng.random() < 0.15:  # drawn from the replicate's seed: the same replicates fail in every run
        return d.drop(columns="x")
    return d


def truth(q, sd):
    return {"fixef": dict(BETA), "sd": {"g": sd}}


def binary_study(**kw):
    args = dict(simulate=simulate_binary, spec=gb.Spec("y ~ x + (1 | g)", family="binomial"),
                methods=["pql", "laplace", "agq"], truth=truth, grid={"q": [30], "sd": [1.0]},
                n_rep=30, seed=3, chunk_size=5, name="binary")
    args.update(kw)
    return Study(**args)


@pytest.fixture(scope="module")
def serial():
    return binary_study().run(processes=1, progress=False)


def test_replicates_are_tidy_and_summary_matches_direct_computation(serial):
    r = serial.replicates
    assert list(r.columns[:4]) == ["q", "sd", "rep", "method"]
    assert set(r["method"]) == {"pql", "laplace", "agq"} and r["rep"].nunique() == 30
    assert set(zip(r["quantity"], r["term"])) == {("fixef", "(Intercept)"), ("fixef", "x"), ("sd", "g")}
    s = serial.summary().set_index(["method", "quantity", "term"])
    for m in ("pql", "laplace", "agq"):
        for q, t, tv in (("fixef", "x", 1.0), ("sd", "g", 1.0)):
            est = r[(r.method == m) & (r.quantity == q) & (r.term == t)]["estimate"].to_numpy()
            row = s.loc[(m, q, t)]
            assert row["truth"] == tv and row["n_ok"] == 30 and row["n_failed"] == 0
            assert row["bias"] == pytest.approx(est.mean() - tv, abs=1e-14)
            assert row["rmse"] == pytest.approx(np.sqrt(np.mean((est - tv) ** 2)), abs=1e-14)
            assert row["mcse_bias"] == pytest.approx(est.std(ddof=1) / np.sqrt(30), abs=1e-14)
        x = r[(r.method == m) & (r.term == "x")]
        assert s.loc[(m, "fixef", "x"), "coverage"] == pytest.approx(((x.lower <= 1) & (1 <= x.upper)).mean())
    # agq is the exact ML: its estimate of x is one of these fits, checked directly
    rep0 = r[(r.rep == 0) & (r.method == "agq") & (r.term == "x")]["estimate"].iloc[0]
    data0 = simulate_binary(np.random.default_rng(binary_study().seed_of({"q": 30, "sd": 1.0}, 0)), 30, 1.0)
    assert rep0 == gb.fit("y ~ x + (1 | g)", data0, family="binomial", method="agq").fixef["x"]
    # PQL shrinks the cluster sd: the known downward bias (Rodriguez and Goldman)
    assert s.loc[("pql", "sd", "g"), "mean"] < s.loc[("agq", "sd", "g"), "mean"]


def test_interrupted_then_resumed_gives_identical_summary(serial, tmp_path):
    store = tmp_path / "binary"
    part = binary_study().run(store=store, processes=1, progress=False, max_chunks=2)
    assert part.n_missing == 20 and len(list(store.glob("chunk-*.parquet"))) == 2
    again = binary_study().run(store=store, processes=2, progress=False)  # the rest, in 2 processes
    assert again.n_missing == 0 and len(list(store.glob("chunk-*.parquet"))) == 6
    pd.testing.assert_frame_equal(again.summary(), serial.summary(), check_exact=True)
    cols = ["q", "sd", "rep", "method", "quantity", "term", "estimate", "se_or_sd", "lower", "upper"]
    pd.testing.assert_frame_equal(again.replicates[cols], serial.replicates[cols], check_exact=True)
    # a run on a finished store fits nothing and reads the same
    done = binary_study().run(store=store, processes=1, progress=False)
    pd.testing.assert_frame_equal(done.summary(), serial.summary(), check_exact=True)


def test_store_refuses_another_study(tmp_path):
    binary_study(n_rep=2, chunk_size=2).run(store=tmp_path, processes=1, progress=False)
    with pytest.raises(SpecError, match="holds another study.*seed"):
        binary_study(n_rep=2, seed=4).run(store=tmp_path, processes=1, progress=False)


def test_on_a_dask_local_cluster_with_two_workers(serial):
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = binary_study().run(client=client, progress=False)
        assert len(client.scheduler_info()["workers"]) == 2
        # the same study again on the same cluster (its input was once released under the reused
        # key while the next run scattered it, and that run silently returned no replicates)
        again = [binary_study().run(client=client, progress=False) for _ in range(2)]
    pd.testing.assert_frame_equal(res.summary(), serial.summary(), check_exact=True)
    for r in again:
        pd.testing.assert_frame_equal(r.summary(), serial.summary(), check_exact=True)


def test_a_failing_replicate_is_recorded_not_fatal():
    res = binary_study(simulate=simulate_with_failure).run(processes=1, progress=False)
    f = res.failures()
    assert len(f) >= 3 and set(f["method"]) == {"pql", "laplace", "agq"}
    assert f["error"].str.contains("DataError").all() and f["error"].str.contains("'x'").all()
    s = res.summary()
    nfail = f["rep"].nunique()
    assert (s["n_failed"] == nfail).all() and (s["n_ok"] == 30 - nfail).all()


def test_bad_definitions_name_the_argument():
    with pytest.raises(SpecError, match="n_rep must be a positive integer"):
        binary_study(n_rep=0)
    with pytest.raises(SpecError, match="unknown"):
        binary_study(methods=["laplace", "nosuch"])
    with pytest.raises(SpecError, match="grid: no values for 'q'"):
        binary_study(grid={"q": [], "sd": [1.0]})
    with pytest.raises(SpecError, match="spec must be"):
        binary_study(spec="y ~ x + (1 | g)")


def test_seeds_depend_on_the_point_values_not_the_grid_order():
    a = binary_study(grid={"q": [30, 40], "sd": [1.0]})
    b = binary_study(grid={"q": [40, 30], "sd": [1.0]})
    sa = np.random.default_rng(a.seed_of({"q": 30, "sd": 1.0}, 5)).random(2)
    sb = np.random.default_rng(b.seed_of({"q": 30, "sd": 1.0}, 5)).random(2)
    sc = np.random.default_rng(b.seed_of({"q": 40, "sd": 1.0}, 5)).random(2)
    assert np.array_equal(sa, sb) and not np.array_equal(sa, sc)


def test_plot_and_command_line(tmp_path, serial):
    import matplotlib

    matplotlib.use("Agg")
    fig = serial.plot()
    assert len(fig.axes) == 6  # (fixef x2, sd) x (bias, coverage)
    script = tmp_path / "tiny_study.py"
    script.write_text(
        "import numpy as np, pandas as pd, glmmbayes as gb\n"
        "def sim(rng, n):\n"
        "    g = np.repeat(np.arange(10), 3)\n"
        "    return pd.DataFrame({'y': rng.normal(size=30) + rng.normal(size=10)[g], 'g': g.astype(str)})\n"
        "study = gb.Study(simulate=sim, spec=gb.Spec('y ~ 1 + (1 | g)', family='gaussian'), methods=['laplace'],\n"
        "                 truth=lambda n: {'fixef': {'(Intercept)': 0.0}, 'sd': {'g': 1.0}, 'sigma': 1.0},\n"
        "                 grid={'n': [30]}, n_rep=4, chunk_size=2, seed=9)\n")
    res = run_study_from_file(str(script), store=str(tmp_path / "s"), progress=False, processes=1)
    assert res.n_missing == 0 and "sigma" in set(res.summary()["quantity"])
    from glmmbayes.cli import main

    assert main(["study", str(script), "--store", str(tmp_path / "s"), "-q"]) == 0


def _chunk_dies_on_2(payload, task):
    if task == 2:
        raise MemoryError("worker killed")
    return [payload * task]


def test_a_chunk_lost_outside_its_replicates_is_listed_and_the_rest_run():
    from glmmbayes.studies.runner import run_tasks

    got = {}
    with pytest.warns(RuntimeWarning, match="chunk 2 lost .*run again"):
        log = run_tasks(_chunk_dies_on_2, 10, [0, 1, 2, 3], lambda t, r: got.setdefault(t, r) and 1,
                        processes=1, progress=False)
    assert got == {0: [0], 1: [10], 3: [30]} and log.done == 3
    assert log.lost == [(2, "MemoryError: worker killed")]
