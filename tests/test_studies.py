"""McCulloch's Table 1 (seed 000): the normal–exponential simulation."""

import math
import time

import numpy as np
import pytest

from glmmbayes import studies


def test_joint_u_expectation_is_mccullochs_eq7():
    # 6 sqrt(pi) / 11 = 0.967 for n = 2, x_i = i/n, lambda = 1
    assert studies.joint_u_expectation(2, 1.0, 5.0) == pytest.approx(5 + 6 * math.sqrt(math.pi) / 11, abs=1e-12)


def test_replicate_seed_depends_only_on_seed_q_rep():
    a = np.random.default_rng(studies.replicate_seed(3, 20, 7)).random(3)
    b = np.random.default_rng(studies.replicate_seed(3, 20, 7)).random(3)
    c = np.random.default_rng(studies.replicate_seed(3, 50, 7)).random(3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_small_table_reproducible_and_roughly_right():
    """Small n_rep: the same seed gives the same table with 1 or 2 processes; rough values."""
    tab, reps = studies.normal_exponential_table(q=(20, 50), n_rep=12, seed=11, processes=1, return_replicates=True)
    tab2 = studies.normal_exponential_table(q=(20, 50), n_rep=12, seed=11, processes=2)
    assert tab.equals(tab2)
    assert list(tab.index) == [20, 50]
    for c in ("joint_u", "joint_u_constrained", "joint_w", "ml"):
        assert f"{c}_se" in tab
    assert (tab["n_rep"] == 12).all() and (tab["n_failed"] == 0).all()
    # paired differences are far more precise than the levels
    d = reps.assign(du=reps.joint_u - reps.ml, dw=reps.joint_w - reps.ml, dc=reps.joint_u_constrained - reps.ml)
    m = d.groupby("q")[["du", "dw", "dc"]].mean()
    assert m["du"].between(0.75, 1.2).all()  # McCulloch: 5.97 - 5.00
    assert m["dw"].between(0.05, 0.30).all()  # 5.15 - 5.00
    assert m["dc"].between(0.55, 0.95).all()  # the constrained joint mode: about 5.75
    assert (tab["ml"] - 5).abs().max() < 0.35  # 4 SE at q = 20 with 12 replicates
    # different seed, different table
    tab3 = studies.normal_exponential_table(q=(20,), n_rep=4, seed=12, processes=1)
    assert tab3.loc[20, "ml"] != tab.loc[20, "ml"]


@pytest.mark.slow
def test_table1_acceptance():
    """McCulloch's Table 1 within 3 Monte Carlo SE (ours and his combined), n_rep = 1000 per q.

    Runtime: about 4-8 minutes on 2 CPUs (about 0.1-0.2 s per replicate for ML + three joint fits)."""
    t0 = time.perf_counter()
    tab = studies.normal_exponential_table(n_rep=1000, seed=2024)
    ref = studies.MCCULLOCH_TABLE1
    for q in ref.index:
        for c in ("joint_u", "joint_w", "ml"):
            se = math.hypot(tab.loc[q, f"{c}_se"], ref.loc[q, f"{c}_se"])
            assert abs(tab.loc[q, c] - ref.loc[q, c]) < 3 * se, (q, c, tab.loc[q, c], ref.loc[q, c], se)
        # and against the exact values: E[joint_u] = 5 + 6 sqrt(pi)/11; ML about unbiased
        assert abs(tab.loc[q, "joint_u"] - tab.attrs["joint_u_expected"]) < 3 * tab.loc[q, "joint_u_se"]
        assert abs(tab.loc[q, "ml"] - 5.0) < 3 * tab.loc[q, "ml_se"]
    assert (tab["n_failed"] == 0).all()
    print(tab.round(4).to_string(), f"\n{time.perf_counter() - t0:.0f} s")


@pytest.mark.slow
def test_table_hmc_column():
    """The flat-prior posterior mean (NUTS) sits with the ML estimate, not with the joint modes."""
    tab, reps = studies.normal_exponential_table(q=(50,), n_rep=4, seed=5, processes=1, hmc=True,
                                                 hmc_opts={"draws": 500, "tune": 500}, return_replicates=True)
    assert "hmc" in tab and "hmc_se" in tab
    assert (reps["hmc"] - reps["ml"]).abs().max() < 0.1
    assert ((reps["joint_w"] - reps["hmc"]) > 0.05).all()


def test_table1_is_a_study_on_the_engine(tmp_path):
    """The table from the engine's replicates, run through a store in two pieces, is the table."""
    tab = studies.normal_exponential_table(q=(20,), n_rep=6, seed=4, processes=1)
    st = studies.normal_exponential_study(q=(20,), n_rep=6, seed=4, chunk_size=3)
    st.run(store=tmp_path, processes=1, progress=False, max_chunks=1)
    tab2 = studies.normal_exponential_table(q=(20,), n_rep=6, seed=4, processes=1, store=str(tmp_path))
    assert tab.equals(tab2)
    res = st.run(store=tmp_path, processes=1, progress=False)
    s = res.summary().set_index("method")
    # the same six estimates averaged by two code paths: equal up to the order of summation
    assert s.loc["ml", "mean"] == pytest.approx(tab.loc[20, "ml"], rel=4 * np.finfo(float).eps)
    assert s.loc["ml", "truth"] == 5.0
    assert s.loc["joint_u", "bias"] == pytest.approx(tab.loc[20, "joint_u"] - 5.0, abs=1e-14)


def test_guimmun_study_quick():
    """The nested binary study on 12 communities: the simulated data keep the guImmun design, and
    the fits recover the truth's structure (Laplace shrinks the mother sd, AGQ does not)."""
    d = studies.simulate_guimmun(np.random.default_rng(1), n_comm=12, sd_mom=2.0, sd_comm=1.0)
    assert d["comm"].nunique() == 12 and set(d["immun"].unique()) <= {0.0, 1.0}
    st = studies.guimmun_study(n_comm=12, sd_mom=2.0, n_rep=4, methods=("pql", "laplace", "agq"))
    assert st.points == [{"n_comm": 12, "sd_mom": 2.0, "sd_comm": 1.0}]
    s = st.run(processes=1, progress=False).summary().set_index(["method", "quantity", "term"])
    assert (s["n_ok"] == 4).all() and s.loc[("agq", "sd", "mom"), "truth"] == 2.0
    assert s.loc[("laplace", "sd", "mom"), "mean"] < s.loc[("agq", "sd", "mom"), "mean"]
    assert set(s.loc["agq"].index) == {("fixef", "(Intercept)"), ("fixef", "kid2pY"), ("fixef", "pcInd81"),
                                       ("sd", "mom"), ("sd", "comm")}
