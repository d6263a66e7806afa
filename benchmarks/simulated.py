"""Simulated benchmark data sets, generated with fixed seeds (same data in every run)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _factor(codes, prefix):
    n = int(codes.max()) + 1
    lv = [f"{prefix}{i}" for i in range(n)]
    return pd.Categorical.from_codes(codes, categories=lv)


def binary_100k(seed: int = 1) -> tuple[str, str, pd.DataFrame]:
    """100k rows, y ~ x1 + x2 + x3 + x4 + (1 | g), 2,000 groups."""
    rng = np.random.default_rng(seed)
    n, m = 100_000, 2_000
    g = rng.integers(0, m, n)
    X = rng.standard_normal((n, 4))
    b = rng.normal(0, 0.8, m)
    eta = -0.5 + X @ np.array([0.5, -0.3, 0.2, 0.1]) + b[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    d = pd.DataFrame(X, columns=["x1", "x2", "x3", "x4"])
    d["y"], d["g"] = y, _factor(g, "g")
    return "y ~ x1 + x2 + x3 + x4 + (1 | g)", "binomial", d


def binary_slope_100k(seed: int = 2) -> tuple[str, str, pd.DataFrame]:
    """100k rows, y ~ x + (x | g), 1,000 groups."""
    rng = np.random.default_rng(seed)
    n, m = 100_000, 1_000
    g = rng.integers(0, m, n)
    x = rng.standard_normal(n)
    L = np.linalg.cholesky(np.array([[0.6, 0.1], [0.1, 0.3]]))
    B = rng.standard_normal((m, 2)) @ L.T
    eta = 0.2 + 0.4 * x + B[g, 0] + B[g, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return "y ~ x + (x | g)", "binomial", pd.DataFrame({"y": y, "x": x, "g": _factor(g, "g")})


def poisson_crossed_100k(seed: int = 3) -> tuple[str, str, pd.DataFrame]:
    """100k rows, Poisson y ~ x + (1 | a) + (1 | c), 1,000 x 200 crossed levels."""
    rng = np.random.default_rng(seed)
    n = 100_000
    a = rng.integers(0, 1_000, n)
    c = rng.integers(0, 200, n)
    x = rng.standard_normal(n)
    ba, bc = rng.normal(0, 0.5, 1_000), rng.normal(0, 0.3, 200)
    y = rng.poisson(np.exp(0.3 + 0.2 * x + ba[a] + bc[c]))
    return "y ~ x + (1 | a) + (1 | c)", "poisson", pd.DataFrame(
        {"y": y, "x": x, "a": _factor(a, "a"), "c": _factor(c, "c")})


def binary_1m(seed: int = 4) -> tuple[str, str, pd.DataFrame]:
    """1M rows, y ~ x + (1 | g), 20,000 groups."""
    rng = np.random.default_rng(seed)
    n, m = 1_000_000, 20_000
    g = rng.integers(0, m, n)
    x = rng.standard_normal(n)
    b = rng.normal(0, 0.7, m)
    y = rng.binomial(1, 1 / (1 + np.exp(-(-0.3 + 0.5 * x + b[g]))))
    return "y ~ x + (1 | g)", "binomial", pd.DataFrame({"y": y, "x": x, "g": _factor(g, "g")})


def nested_binary_2k(seed: int = 5) -> tuple[str, str, pd.DataFrame]:
    """2k binary rows, 1,600 mothers within 160 communities, shaped like mlmRev's guImmun:
    child-, mother- and community-level covariates (16 fixed effects), most mothers with one
    child, and large variance components (sd 1.2 for mothers, 0.7 for communities)."""
    rng = np.random.default_rng(seed)
    n_comm, per_comm = 160, 10
    mothers = n_comm * per_comm
    comm_of_mother = np.repeat(np.arange(n_comm), per_comm)
    # 2,000 births: every mother has one, 400 have two
    mother = np.concatenate([np.arange(mothers), rng.choice(mothers, 400, replace=False)])
    comm = comm_of_mother[mother]
    n = len(mother)

    rural_c = rng.random(n_comm) < 0.7
    indig_c = np.clip(rng.beta(0.6, 1.2, n_comm), 0, 1)
    mom = {
        "mom25p": rng.random(mothers) < 0.5,
        "ethn": np.where(rng.random(mothers) < indig_c[comm_of_mother], rng.choice([1, 2], mothers), 0),
        "momEd": rng.choice(3, mothers, p=[0.4, 0.5, 0.1]),
        "husEd": rng.choice(4, mothers, p=[0.3, 0.5, 0.1, 0.1]),
        "momWork": rng.random(mothers) < 0.5,
    }
    kid2p = rng.random(n) < 0.6
    order = rng.choice(4, n, p=[0.35, 0.3, 0.2, 0.15])
    bm, bc = rng.normal(0, 1.2, mothers), rng.normal(0, 0.7, n_comm)
    eta = (-0.9 + 1.3 * kid2p - 0.1 * mom["mom25p"][mother] + np.array([0, -0.15, 0.15, 0.3])[order]
           + np.array([0, -0.1, 0.0])[mom["ethn"][mother]] + np.array([0, 0.3, 0.3])[mom["momEd"][mother]]
           + np.array([0, 0.4, 0.35, 0.0])[mom["husEd"][mother]] + 0.25 * mom["momWork"][mother]
           - 0.65 * rural_c[comm] - 0.85 * indig_c[comm] + bm[mother] + bc[comm])
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))

    def factor(codes, labels):
        return pd.Categorical.from_codes(np.asarray(codes, int), categories=labels)

    yn = ["N", "Y"]
    d = pd.DataFrame({
        "y": y,
        "kid2p": factor(kid2p, yn),
        "mom25p": factor(mom["mom25p"][mother], yn),
        "ord": factor(order, ["01", "23", "46", "7p"]),
        "ethn": factor(mom["ethn"][mother], ["L", "N", "S"]),
        "momEd": factor(mom["momEd"][mother], ["N", "P", "S"]),
        "husEd": factor(mom["husEd"][mother], ["N", "P", "S", "U"]),
        "momWork": factor(mom["momWork"][mother], yn),
        "rural": factor(rural_c[comm], yn),
        "pcInd": indig_c[comm],
        "community": _factor(comm, "c"),
        "mother": _factor(mother % per_comm, "m"),
    })
    formula = ("y ~ kid2p + mom25p + ord + ethn + momEd + husEd + momWork + rural + pcInd"
               " + (1 | community/mother)")
    return formula, "binomial", d


def insteval() -> tuple[str, str, pd.DataFrame, dict]:
    """lme4's InstEval (shipped data, not simulated): 73,421 ratings, students x lecturers x
    departments crossed, the REML LMM y ~ service + (1 | s) + (1 | d) + (1 | dept)."""
    import glmmbayes as gb

    return "y ~ service + (1 | s) + (1 | d) + (1 | dept)", "gaussian", gb.datasets.load("InstEval"), {"REML": True}


def _shipped_lmm(data: str, formula: str):
    """A small LMM of several terms on shipped data (REML, lmer's default)."""

    def case() -> tuple[str, str, pd.DataFrame, dict]:
        import glmmbayes as gb

        return formula, "gaussian", gb.datasets.load(data, derived=True), {"REML": True}

    case.__doc__ = f"{data}: {formula} (REML; shipped data, not simulated)"
    return case


SIMULATED = {
    "oats_nested_lmm": _shipped_lmm("Oats", "yield ~ nitro + (1 | Block/Variety)"),
    "oats_vector_lmm": _shipped_lmm("Oats", "yield ~ nitro + (nitro | Block) + (1 | Block:Variety)"),
    "salamanders_crossed_lmm": _shipped_lmm("Salamanders", "count ~ mined + cover + (1 | site) + (1 | spp)"),
    "insteval_reml": insteval,
    "sim_binary_100k": binary_100k,
    "sim_binary_slope_100k": binary_slope_100k,
    "sim_poisson_crossed_100k": poisson_crossed_100k,
    "sim_nested_binary_2k": nested_binary_2k,
    "sim_binary_1m": binary_1m,
}
