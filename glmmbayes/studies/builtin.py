"""Built-in studies on the engine: McCulloch's Table 1 (the normal–exponential model) and a
nested binary study on the guImmun design.

Table 1 (McCulloch, seed 000).

Model (8): y_ij = beta x_i + u_j^½ + e_ij, i = 1..n, j = 1..q, x_i = i/n, u_j ~ Exponential(lambda)
with lambda known, e_ij ~ N(0, 1) with the variance known (= 1). McCulloch: beta = 5, n = 2,
lambda = 1, q = 20, 50, 100, 200; each entry of Table 1 is the average of the estimates of beta over
the replicates with its Monte Carlo standard error (sd / sqrt(n_rep)); his replicate numbers were
chosen to give SEs <= .007 (not stated; about 1200 at q = 20 down to about 250 at q = 200).

His joint-maximization column "Using Z u^½" is computed from his closed form (eqs. 6–7), which
lets u^½ = (Z'Z + 2λI)⁻¹Z'(Y - Xβ) be negative, i.e. ignores u >= 0: that is method="joint"
with parameterization="u", constrain=False, and its expectation is exactly beta + 6 sqrt(pi)/11 = 5.967 (his eq. 7).
Maximizing over the model's parameter space u >= 0 (`constrain=True`) gives a different, also
biased estimator (about 5.75): column `joint_u_constrained`.
"""

from __future__ import annotations

import math
import sys
from functools import partial

import numpy as np
import pandas as pd

from ..re_dist import RandomEffect
from ..spec import Spec
from .engine import Study

MCCULLOCH_TABLE1 = pd.DataFrame(
    {
        "joint_u": [5.979, 5.968, 5.958, 5.977],
        "joint_u_se": [0.007, 0.006, 0.007, 0.007],
        "joint_w": [5.163, 5.150, 5.139, 5.157],
        "joint_w_se": [0.007, 0.005, 0.006, 0.007],
        "ml": [5.017, 5.004, 4.993, 5.011],
        "ml_se": [0.007, 0.005, 0.006, 0.007],
    },
    index=pd.Index([20, 50, 100, 200], name="q"),
)
"""McCulloch (seed 000) Table 1: average estimates of beta (true 5) with their standard errors."""

ESTIMATORS = ("joint_u", "joint_u_constrained", "joint_w", "ml")
FORMULA = "y ~ 0 + x + (1 | g)"


def joint_u_expectation(n: int = 2, lam: float = 1.0, beta: float = 5.0) -> float:
    """McCulloch's eq. (7) for model (8): E[beta_joint,u] = beta + bias, bias independent of q.

    bias = 2 lam (sum x) E[u^½] / ((sum x²)(n + 2 lam) - (sum x)²), E[u^½] = sqrt(pi / lam) / 2."""
    x = np.arange(1, n + 1) / n
    e_sqrt_u = 0.5 * math.sqrt(math.pi / lam)
    return beta + 2 * lam * x.sum() * e_sqrt_u / ((x @ x) * (n + 2 * lam) - x.sum() ** 2)


def simulate_normal_exponential(rng: np.random.Generator, q: int, n: int = 2, beta: float = 5.0,
                                lam: float = 1.0) -> pd.DataFrame:
    """One data set from McCulloch's model (8), rows ordered by group then i."""
    x = np.arange(1, n + 1) / n
    u = rng.exponential(1.0 / lam, size=q)
    y = beta * x[None, :] + np.sqrt(u)[:, None] + rng.standard_normal((q, n))
    return pd.DataFrame({
        "y": y.ravel(),
        "x": np.tile(x, q),
        "g": np.repeat([f"g{j:04d}" for j in range(q)], n),
    })


def replicate_seed(seed: int, q: int, rep: int) -> np.random.SeedSequence:
    """Table 1's replicate seed: a function of (seed, q, rep) only, so the table does not depend
    on the number of processes or the order in which replicates run."""
    return np.random.SeedSequence([int(seed), int(q), int(rep)])


def _table1_seed(seed, point, rep):
    return replicate_seed(seed, point["q"], rep)


def _table1_data(rng, q, n, beta, lam):
    return simulate_normal_exponential(rng, q, n, beta, lam)


def _beta_only(fit, point):
    b = float(fit.beta_hat[0])
    return [("fixef", "x", b, np.nan, np.nan, np.nan)]


def normal_exponential_study(q=(20, 50, 100, 200), n_rep: int = 200, seed: int = 0, hmc: bool = False,
                             n: int = 2, beta: float = 5.0, lam: float = 1.0, hmc_opts: dict | None = None,
                             chunk_size: int | None = None) -> Study:
    """McCulloch's Table 1 as a `Study`: at each q, the estimate of beta by exact ML (``ml``,
    per-group quadrature), joint maximization (``joint_u``: Z u^½ unconstrained as McCulloch
    computed it; ``joint_u_constrained``; ``joint_w``: Z w, w = u^½ Rayleigh) and, with
    hmc=True, the flat-prior posterior mean (``hmc``)."""
    spec = Spec(FORMULA, family="gaussian", known_dispersion=1.0,
                re_dist=RandomEffect("exponential", rate=lam, entry="sqrt"))
    fits = {"ml": {"method": "agq"},
            "joint_u": {"method": "joint", "parameterization": "u", "constrain": False},
            "joint_u_constrained": {"method": "joint", "parameterization": "u", "constrain": True},
            "joint_w": {"method": "joint", "parameterization": "w", "constrain": True}}
    if hmc:
        o = dict(hmc_opts or {})
        fits["hmc"] = {"method": "hmc", "draws": o.get("draws", 1000), "tune": o.get("tune", 1000),
                       "chains": o.get("chains", 2), "cores": 1, "progressbar": False,
                       "parameterization": o.get("parameterization", "w"), "priors": {"fixef": "flat"},
                       "compute_map": False}
    return Study(simulate=partial(_table1_data, n=n, beta=beta, lam=lam), spec=spec, methods=fits,
                 truth=lambda q: {"fixef": {"x": beta}}, grid={"q": [int(v) for v in np.atleast_1d(q)]},
                 n_rep=n_rep, seed=seed, chunk_size=chunk_size or (5 if hmc else 25), extract=_beta_only,
                 replicate_seed=_table1_seed, name="normal-exponential")


def normal_exponential_replicates(q=(20, 50, 100, 200), n_rep: int = 200, seed: int = 0, processes: int | None = None,
                                  hmc: bool = False, n: int = 2, beta: float = 5.0, lam: float = 1.0,
                                  progress: bool | None = None, chunk: int | None = None,
                                  hmc_opts: dict | None = None, store: str | None = None,
                                  client=None) -> pd.DataFrame:
    """One row per (q, replicate) with every estimator's beta and the fits' remarks (`messages`,
    None when every fit converged); see `normal_exponential_table`."""
    study = normal_exponential_study(q, n_rep, seed, hmc, n, beta, lam, hmc_opts, chunk)
    res = study.run(store=store, client=client, processes=processes,
                    progress=sys.stderr.isatty() if progress is None else bool(progress))
    r = res.replicates
    wide = r.pivot_table(index=["q", "rep"], columns="method", values="estimate", aggfunc="first", dropna=False)
    wide = wide[[m for m in study.fits if m in wide.columns]]
    wide.columns.name = None

    remarks: dict = {}
    for q_, rep, m, e, msg in zip(r["q"], r["rep"], r["method"], r["error"], r["message"]):
        if e or msg:
            remarks.setdefault((q_, rep), []).append(f"{m}: {e or msg}")
    wide["messages"] = [remarks.get(k) for k in wide.index]
    return wide.reset_index().sort_values(["q", "rep"]).reset_index(drop=True)


def normal_exponential_table(q=(20, 50, 100, 200), n_rep: int = 200, seed: int = 0, processes: int | None = None,
                             hmc: bool = False, n: int = 2, beta: float = 5.0, lam: float = 1.0,
                             progress: bool | None = None, hmc_opts: dict | None = None,
                             return_replicates: bool = False, store: str | None = None, client=None):
    """Reproduce McCulloch's Table 1: the average estimate of beta over `n_rep` replicates per q,
    with its Monte Carlo SE (sd / sqrt(n_rep)), for

    - ``joint_u``: joint maximization with Z u^½ as McCulloch computed it (closed form, u^½ free);
    - ``joint_u_constrained``: the same with u >= 0 enforced (the actual joint mode);
    - ``joint_w``: joint maximization with Z w, w = u^½ Rayleigh;
    - ``ml``: exact ML by per-group quadrature;
    - ``hmc`` (hmc=True): the posterior mean of beta, flat prior, NUTS (``hmc_opts``: draws, tune,
      chains, parameterization; defaults 1000, 1000, 2, "w").

    Runs `normal_exponential_study` on the studies engine: `processes` local processes (default:
    all CPUs; 1 = in this process) or a Dask `client`, each replicate with the seed
    `replicate_seed(seed, q, rep)`, so the same seed gives the same table however it runs;
    `store` keeps finished chunks so that an interrupted table resumes. Columns also include
    ``n_rep`` and ``n_failed`` (replicates with a convergence remark or an error).
    Returns the table (DataFrame indexed by q), and the replicates with return_replicates=True.
    """
    reps = normal_exponential_replicates(q, n_rep, seed, processes, hmc, n, beta, lam, progress,
                                         hmc_opts=hmc_opts, store=store, client=client)
    cols = [c for c in (*ESTIMATORS, "hmc") if c in reps]
    g = reps.groupby("q")
    out = pd.DataFrame(index=pd.Index(sorted(reps["q"].unique()), name="q"))
    for c in cols:
        out[c] = g[c].mean()
        out[f"{c}_se"] = g[c].std(ddof=1) / np.sqrt(g[c].count())
    out["n_rep"] = g.size()
    out["n_failed"] = g["messages"].apply(lambda s: int(sum(m is not None for m in s)))
    out.attrs["joint_u_expected"] = joint_u_expectation(n, lam, beta)
    out.attrs["seed"] = seed
    if return_replicates:
        return out, reps
    return out


# ---------------------------------------------------------------------------- guImmun
GUIMMUN_FORMULA = "immun ~ kid2p + pcInd81 + (1 | mom) + (1 | comm)"
GUIMMUN_BETA = {"(Intercept)": -0.88, "kid2pY": 1.27, "pcInd81": -0.86}
"""True fixed effects of the guImmun study: lme4's Laplace estimates for the full model
(mlmRev's guImmun), rounded -- Rodríguez and Goldman took their fitted values as the truth."""

_GU_CACHE: dict = {}


def _guimmun_base(n_comm, formula):
    """The guImmun rows of the first `n_comm` communities (all when None), their fixed-effects
    matrix and mother/community codes (cached per process)."""
    key = (n_comm, formula)
    if key not in _GU_CACHE:
        from .. import datasets
        from ..design import build_design

        gu = datasets.load("guImmun")
        comms = sorted(gu["comm"].astype(str).unique(), key=lambda s: (len(s), s))
        if n_comm is not None:
            if not 1 <= int(n_comm) <= len(comms):
                raise ValueError(f"n_comm must be between 1 and {len(comms)}, got {n_comm!r}")
            comms = comms[:int(n_comm)]
        sub = gu[gu["comm"].astype(str).isin(comms)].reset_index(drop=True)
        for c in ("mom", "comm"):
            sub[c] = sub[c].astype(str)
        d = build_design(Spec(formula, family="binomial"), sub)
        mom = pd.factorize(sub["mom"])[0]
        comm = pd.factorize(sub["comm"])[0]
        _GU_CACHE[key] = (sub, d.X, list(d.fixef_names), mom, comm)
    return _GU_CACHE[key]


def simulate_guimmun(rng: np.random.Generator, n_comm=None, sd_mom: float = 1.0, sd_comm: float = 1.0,
                     formula: str = GUIMMUN_FORMULA, beta: dict | None = None) -> pd.DataFrame:
    """One binary response on the guImmun design (children within mothers within communities):
    logit P(immun) = X beta + b_mom + b_comm, b_mom ~ N(0, sd_mom²), b_comm ~ N(0, sd_comm²)."""
    sub, X, names, mom, comm = _guimmun_base(n_comm, formula)
    beta = dict(GUIMMUN_BETA if beta is None else beta)
    missing = [n for n in names if n not in beta]
    if missing:
        raise ValueError(f"beta: no true value for {', '.join(missing)}")
    eta = X @ np.array([beta[n] for n in names]) + sd_mom * rng.standard_normal(mom.max() + 1)[mom] \
        + sd_comm * rng.standard_normal(comm.max() + 1)[comm]
    y = (rng.random(len(eta)) < 1 / (1 + np.exp(-eta))).astype(float)
    return sub.assign(immun=y)


def _guimmun_truth(beta):
    return lambda n_comm, sd_mom, sd_comm: {"fixef": dict(beta), "sd": {"mom": sd_mom, "comm": sd_comm}}


def guimmun_study(n_comm=(None,), sd_mom=(1.0, 2.0), sd_comm=(1.0,), methods=("pql", "laplace", "agq", "hmc"),
                  n_rep: int = 100, seed: int = 1, formula: str = GUIMMUN_FORMULA, beta: dict | None = None,
                  nAGQ: int = 5, hmc_opts: dict | None = None, chunk_size: int = 5) -> Study:
    """A Rodríguez–Goldman-style study on the guImmun design: binary responses simulated on the
    real covariates and nesting (mothers within communities; `n_comm` restricts it to the first
    communities), with known mother and community sds; the methods (PQL, Laplace, nested AGQ
    with `nAGQ` points per effect, HMC with `hmc_opts`) compared for bias and coverage.
    Grid: every combination of n_comm, sd_mom, sd_comm. Returns the `Study`."""
    beta = dict(GUIMMUN_BETA if beta is None else beta)
    o = dict(hmc_opts or {})
    table = {"pql": {"method": "pql"}, "laplace": {"method": "laplace"},
             "agq": {"method": "agq", "nAGQ": nAGQ},
             "hmc": {"method": "hmc", "draws": o.get("draws", 1000), "tune": o.get("tune", 1000),
                     "chains": o.get("chains", 2), "cores": 1, "progressbar": False}}
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise ValueError(f"methods: {', '.join(unknown)} not in the guImmun study (pql, laplace, agq, hmc)")
    return Study(simulate=partial(simulate_guimmun, formula=formula, beta=beta),
                 spec=Spec(formula, family="binomial"), methods={m: table[m] for m in methods},
                 truth=_guimmun_truth(beta),
                 grid={"n_comm": list(np.atleast_1d(n_comm)), "sd_mom": list(np.atleast_1d(sd_mom)),
                       "sd_comm": list(np.atleast_1d(sd_comm))},
                 n_rep=n_rep, seed=seed, chunk_size=chunk_size, name="guImmun")
