"""Non-normal random effects (seed 000) through the one pipeline: distributions, exact ML by
quadrature (method="agq"), joint maximization in both parameterizations (method="joint"), the
PyMC model and its posterior (method="hmc"), and `compare`."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

import glmmbayes as gb
from glmmbayes.core import nonnormal as nn
from glmmbayes.errors import SpecError
from glmmbayes.re_dist import RandomEffect
from glmmbayes.studies import simulate_normal_exponential

FORMULA = "y ~ 0 + x + (1 | g)"
EXP_SQRT = RandomEffect("exponential", rate=1.0, entry="sqrt")  # McCulloch (3): Z u^½
RAYLEIGH = RandomEffect("rayleigh", scale=math.sqrt(0.5))  # McCulloch (9): Z w


def mcculloch_spec(re=EXP_SQRT, phi=1.0):
    """McCulloch's model: the error variance is known (phi = 1) unless phi=None."""
    return gb.Spec(FORMULA, family="gaussian", re_dist=re, known_dispersion=phi)


def fit(spec, data, method="agq", **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", gb.ConvergenceWarning)
        return gb.fit(spec, data, method=method, **kw)


@pytest.fixture(scope="module")
def small():
    """McCulloch's model (8) with q = 12 groups."""
    return simulate_normal_exponential(np.random.default_rng(7), 12)


# --------------------------------------------------------------------------- the API


def test_random_effect_validation_and_repr():
    assert "rate=<estimated>" in repr(RandomEffect("exponential", entry="sqrt"))
    assert RandomEffect("gamma", shape=2, rate=None).estimated == ("rate",)
    with pytest.raises(SpecError, match="unknown random-effect distribution"):
        RandomEffect("weibull")
    with pytest.raises(SpecError, match="entry"):
        RandomEffect("exponential", entry="log")
    with pytest.raises(SpecError, match="positive"):
        RandomEffect("normal", sd=1.0, entry="sqrt")
    with pytest.raises(SpecError, match="unknown"):
        RandomEffect("exponential", lam=1.0)
    with pytest.raises(SpecError, match="positive and finite"):
        RandomEffect("exponential", rate=-1.0)


def test_spec_re_dist_field():
    assert gb.Spec(FORMULA, family="gaussian").re_dist is None
    s = mcculloch_spec()
    assert s.re_dist == EXP_SQRT
    with pytest.raises(SpecError, match="re_dist must be None"):
        gb.Spec(FORMULA, family="gaussian", re_dist="exponential")
    with pytest.raises(SpecError, match="exactly one random term"):
        gb.Spec("y ~ x + (1 | g) + (1 | h)", family="gaussian", re_dist=EXP_SQRT)


def test_linear_form_is_the_distribution_of_the_entry():
    """w = u^½ for u ~ Exp(λ) is Rayleigh(1/sqrt(2λ)); for u ~ Gamma(k, r) it is Nakagami(k, k/r)."""
    w = np.linspace(0.05, 4, 50)
    for re in (RandomEffect("exponential", rate=1.7, entry="sqrt"), RandomEffect("gamma", shape=2.5, rate=0.7, entry="sqrt")):
        lin = re.linear_form()
        assert lin.entry == "identity"
        np.testing.assert_allclose(re.logpdf_entry(w), lin.logpdf(w), rtol=1e-12)
        # and against scipy's density of the square root of a draw
        np.testing.assert_allclose(np.exp(lin.logpdf(w)), lin.frozen().pdf(w), rtol=1e-10)
    lin = RandomEffect("exponential", rate=1.0, entry="sqrt").linear_form()
    assert lin.dist == "rayleigh" and lin.known["scale"] == pytest.approx(RAYLEIGH.known["scale"], rel=1e-15)
    assert RandomEffect("gamma", shape=2.0, entry="sqrt").linear_form().estimated == ("omega",)


# --------------------------------------------------------------------------- ML


def _quad_loglik(df, beta, logf_u, entry):
    """Σ_j log ∫ Π_i φ(y_ij - β x_i - h(u)) f_u(u) du with scipy.integrate.quad (independent code)."""
    tot = 0.0
    for _, d in df.groupby("g"):
        r = d["y"].to_numpy() - beta * d["x"].to_numpy()
        f = lambda u: np.exp(np.sum(stats.norm.logpdf(r - entry(u))) + logf_u(u))  # noqa: E731
        val, _err = integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-13, limit=400)
        tot += math.log(val)
    return tot


def test_quadrature_loglik_matches_scipy_quad(small):
    pu = gb.design(mcculloch_spec(), small)
    pw = gb.design(mcculloch_spec(RAYLEIGH), small)
    for beta in (3.5, 5.0, 6.2):
        ref_u = _quad_loglik(small, beta, lambda u: -u, np.sqrt)
        ref_w = _quad_loglik(small, beta, lambda w: math.log(2 * w) - w * w, lambda w: w)
        assert ref_u == pytest.approx(ref_w, abs=1e-9)
        assert nn.exact_loglik(pu, [beta]) == pytest.approx(ref_u, abs=1e-8)
        assert nn.exact_loglik(pw, [beta]) == pytest.approx(ref_u, abs=1e-8)


def test_quadrature_loglik_poisson_gamma_matches_quad():
    """Another family through family.loglik: Poisson/log with a sqrt-Gamma random intercept."""
    rng = np.random.default_rng(5)
    q, m = 10, 4
    g = np.repeat(np.arange(q), m)
    x = rng.normal(size=q * m)
    u = rng.gamma(2.0, 1 / 3.0, size=q)
    y = rng.poisson(np.exp(0.3 + 0.5 * x + np.sqrt(u)[g]))
    df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    spec = gb.Spec("y ~ 1 + x + (1 | g)", family="poisson", re_dist=RandomEffect("gamma", shape=2.0, rate=3.0, entry="sqrt"))
    b = np.array([0.2, 0.6])
    ref = 0.0
    for j in range(q):
        yy, xx = y[g == j], x[g == j]
        f = lambda uu: np.exp(np.sum(stats.poisson.logpmf(yy, np.exp(b[0] + b[1] * xx + np.sqrt(uu))))) * stats.gamma.pdf(uu, 2.0, scale=1 / 3)  # noqa: E731
        ref += math.log(integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-13, limit=400)[0])
    assert nn.exact_loglik(gb.design(spec, df), b) == pytest.approx(ref, abs=1e-8)


def test_ml_equivariant_under_reparameterization(small):
    fu = fit(mcculloch_spec(), small)
    fw = fit(mcculloch_spec(RAYLEIGH), small)
    assert fu.converged and fw.converged
    assert fu.method == "agq" and fu.estimate_kind == "ml" and fu.likelihood == "exact"
    assert fu.fixef["x"] == pytest.approx(fw.fixef["x"], abs=1e-6)
    assert fu.loglik == pytest.approx(fw.loglik, abs=1e-8)
    # the ML estimate maximizes the independent quad likelihood
    ref = optimize.minimize_scalar(lambda b: -_quad_loglik(small, b, lambda u: -u, np.sqrt),
                                   bounds=(fu.fixef["x"] - 1, fu.fixef["x"] + 1), method="bounded",
                                   options={"xatol": 1e-9})
    assert fu.fixef["x"] == pytest.approx(ref.x, abs=1e-5)
    # McCulloch's ML equation (15): X'(Y - Xβ - Z E[u^½ | Y]) = 0
    d = fu.design
    t = d.terms[0]
    Ew = fu.ranef["g"]["(Intercept)"].reindex(list(t.levels)).to_numpy()[t.codes]
    score = d.X[:, 0] @ (d.y - d.X[:, 0] * fu.fixef["x"] - Ew)
    assert abs(score) < 1e-5


def test_ml_estimated_parameters_equivariant():
    """Gamma(shape known, rate estimated) with sqrt entry vs Nakagami(m known, omega estimated)."""
    rng = np.random.default_rng(5)
    q, m = 15, 4
    g = np.repeat(np.arange(q), m)
    x = rng.normal(size=q * m)
    y = rng.poisson(np.exp(0.3 + 0.5 * x + np.sqrt(rng.gamma(2.0, 1 / 3.0, size=q))[g]))
    df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    re = RandomEffect("gamma", shape=2.0, entry="sqrt")
    f1 = fit(gb.Spec("y ~ 1 + x + (1 | g)", family="poisson", re_dist=re), df)
    f2 = fit(gb.Spec("y ~ 1 + x + (1 | g)", family="poisson", re_dist=re.linear_form()), df)
    np.testing.assert_allclose(f1.fixef.to_numpy(), f2.fixef.to_numpy(), atol=1e-6)
    assert f1.loglik == pytest.approx(f2.loglik, abs=1e-8)
    assert f2.re_params["omega"] == pytest.approx(2.0 / f1.re_params["rate"], rel=1e-5)


def test_ml_normal_random_effect_is_the_exact_lmm():
    """With a normal RE (sd and residual variance estimated) the quadrature ML is the LMM's ML."""
    rng = np.random.default_rng(2)
    q, m = 12, 3
    g = np.repeat(np.arange(q), m)
    x = rng.normal(size=q * m)
    y = 1 + 0.5 * x + rng.normal(size=q)[g] * 0.8 + rng.normal(size=q * m) * 0.6
    df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    f = fit(gb.Spec("y ~ 1 + x + (1 | g)", family="gaussian", re_dist=RandomEffect("normal")), df)

    def negll(th):
        b0, b1, ls, lp = th
        tot = 0.0
        for j in range(q):
            i = g == j
            V = math.exp(2 * ls) * np.ones((m, m)) + math.exp(lp) * np.eye(m)
            tot += stats.multivariate_normal.logpdf(y[i], b0 + b1 * x[i], V)
        return -tot

    r = optimize.minimize(negll, [1, 0.5, 0, 0], method="Nelder-Mead",
                          options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert f.loglik == pytest.approx(-r.fun, abs=1e-7)
    np.testing.assert_allclose(f.fixef.to_numpy(), r.x[:2], atol=1e-5)
    assert f.re_params["sd"] == pytest.approx(math.exp(r.x[2]), rel=1e-4)
    assert f.phi == pytest.approx(math.exp(r.x[3]), rel=1e-4)


# --------------------------------------------------------------------------- joint


def _closed_forms(df, lam=1.0):
    """McCulloch's joint estimators for model (8): (6)-(7) with u^½ free, the same with u >= 0,
    and (10a)-(10b) for w (w = positive root of (n + 2λ) w² - R w - 1 = 0)."""
    d = df.sort_values(["g", "x"])
    q = d["g"].nunique()
    y = d["y"].to_numpy().reshape(q, -1)
    x = d["x"].to_numpy().reshape(q, -1)[0]
    n = x.size

    def s_free(b):
        return (y - b * x).sum(1) / (n + 2 * lam)

    def w_root(b):
        R = (y - b * x).sum(1)
        a = n + 2 * lam
        return (R + np.sqrt(R * R + 4 * a)) / (2 * a)

    out = {}
    for k, s in (("u_free", s_free), ("u", lambda b: np.maximum(0.0, s_free(b))), ("w", w_root)):
        out[k] = optimize.brentq(lambda b: np.sum(x * (y - b * x - s(b)[:, None])), -50, 50, xtol=1e-14)
    return out


def _brute_force_joint(df, parameterization, lam=1.0):
    """Maximize log f(y, u) over (β, b) with Nelder-Mead-free BFGS on independently written
    objectives (numerical gradients): u-param: -½Σr² - λ b² over b >= 0 (b = u^½);
    w-param: -½Σr² + log(2λ b) - λ b² over b > 0."""
    d = df.sort_values(["g", "x"])
    q = d["g"].nunique()
    y = d["y"].to_numpy().reshape(q, -1)
    x = d["x"].to_numpy().reshape(q, -1)[0]

    def negf(th):
        beta, v = th[0], th[1:]
        b = np.exp(v) if parameterization == "w" else v
        r = y - beta * x - b[:, None]
        val = -0.5 * np.sum(r * r) - lam * np.sum(b * b)
        if parameterization == "w":
            val += np.sum(np.log(2 * lam * b))
        return -val

    x0 = np.concatenate([[5.0], np.full(q, 0.0 if parameterization == "w" else 0.8)])
    if parameterization == "w":
        r = optimize.minimize(negf, x0, method="BFGS", options={"gtol": 1e-10})
    else:
        r = optimize.minimize(negf, x0, method="L-BFGS-B", bounds=[(None, None)] + [(0, None)] * q,
                              options={"ftol": 1e-15, "gtol": 1e-11})
    return r.x[0]


def test_joint_modes_match_closed_forms_and_brute_force(small):
    cf = _closed_forms(small)
    spec = mcculloch_spec()
    ju_free = fit(spec, small, "joint", parameterization="u", constrain=False)
    ju = fit(spec, small, "joint", parameterization="u")
    jw = fit(spec, small, "joint", parameterization="w")
    for f in (ju_free, ju, jw):
        assert f.converged, f.messages
        assert f.method == "joint" and f.estimate_kind == "mode"
    assert ju.details.parameterization == "u" and jw.details.parameterization == "w"
    assert ju_free.fixef["x"] == pytest.approx(cf["u_free"], abs=1e-7)
    assert ju.fixef["x"] == pytest.approx(cf["u"], abs=1e-7)
    assert jw.fixef["x"] == pytest.approx(cf["w"], abs=1e-7)
    assert ju.fixef["x"] == pytest.approx(_brute_force_joint(small, "u"), abs=1e-5)
    assert jw.fixef["x"] == pytest.approx(_brute_force_joint(small, "w"), abs=1e-5)
    # the joint modes differ between the parameterizations (the Jacobian), ML does not
    assert abs(ju_free.fixef["x"] - jw.fixef["x"]) > 0.3
    assert abs(ju.fixef["x"] - jw.fixef["x"]) > 0.1
    # the linear-entry spec (Rayleigh) gives the w-parameterization's mode in either parameterization
    jr = fit(mcculloch_spec(RAYLEIGH), small, "joint", parameterization="u")
    assert jr.fixef["x"] == pytest.approx(jw.fixef["x"], abs=1e-7)


def test_joint_takes_estimated_parameters_from_the_exact_ml(small):
    """Joint maximization over a scale parameter and u is degenerate, so estimated parameters
    (and an unknown φ) come from the exact ML fit, which the method table runs first."""
    spec = mcculloch_spec(RandomEffect("exponential", entry="sqrt"), phi=None)
    df = simulate_normal_exponential(np.random.default_rng(7), 50)  # q = 12 puts the rate at its bound
    ml = fit(spec, df)
    j = fit(spec, df, "joint", parameterization="w")
    assert j.re_params["rate"] == pytest.approx(ml.re_params["rate"], rel=1e-12)
    assert j.phi == pytest.approx(ml.phi, rel=1e-12)
    assert j.details.params_source.startswith("exact ML")
    with pytest.raises(SpecError, match="parameterization must be one of"):
        gb.fit(mcculloch_spec(), small, method="joint", parameterization="v")
    with pytest.raises(SpecError, match="Laplace approximation assumes normal random effects.*'agq'"):
        gb.fit(mcculloch_spec(), small, method="laplace")
    with pytest.raises(SpecError, match="method='pql' cannot fit non-normal"):
        gb.fit(mcculloch_spec(), small, method="pql")


# --------------------------------------------------------------------------- PyMC


def test_pymc_model_structure(small):
    flat = {"fixef": "flat"}
    m = gb.to_pymc(mcculloch_spec(), small, priors=flat, parameterization="u")
    names = {v.name for v in m.free_RVs}
    assert names == {"beta_z", "log_u_g"}
    assert "b_g" in m.named_vars and "u_g" in m.named_vars
    mw = gb.to_pymc(mcculloch_spec(), small, priors=flat, parameterization="w")
    assert {v.name for v in mw.free_RVs} == {"beta_z", "log_w_g"}
    # the two log posteriors differ by the Jacobian only: at w = sqrt(u) they differ by Σ log 2w
    # plus the log-transform Jacobians (log u vs log w): log u = 2 log w
    z = np.linalg.solve(m.glmm_info.basis.B, [5.0])  # β = B z (the same basis in both models)
    pt_u = {"beta_z": z, "log_u_g": np.full(12, math.log(0.81))}
    pt_w = {"beta_z": z, "log_w_g": np.full(12, math.log(0.9))}
    lu = m.compile_logp()(pt_u)
    lw = mw.compile_logp()(pt_w)
    # u-density with d u/d log u = u; w-density f_u(w²) 2w with d w/d log w = w
    expect = 12 * (math.log(2 * 0.9) + math.log(0.9) - math.log(0.81))
    assert lw - lu == pytest.approx(expect, abs=1e-9)


def test_pymc_posterior_mean_invariant(small):
    """Posterior mean of β (flat prior) is the same in both parameterizations (short NUTS runs)."""
    df = simulate_normal_exponential(np.random.default_rng(11), 50)
    means, mcse = [], []
    import arviz as az

    for par in ("u", "w"):
        h = fit(mcculloch_spec(), df, "hmc", parameterization=par, priors={"fixef": "flat"}, draws=1000,
                tune=1000, chains=2, seed=3)
        idata = h.idata
        s = az.summary(idata, var_names=["beta"])
        means.append(float(s["mean"].iloc[0]))
        mcse.append(float(az.mcse(idata, var_names=["beta"])["beta"].values.ravel()[0]))
        assert int(idata.sample_stats.diverging.sum()) == 0
    assert abs(means[0] - means[1]) < 4 * math.hypot(*mcse) + 1e-3
    ml = fit(mcculloch_spec(), df)
    # the flat-prior posterior mean is close to the ML (not equal); the joint modes are far away
    assert abs(means[0] - ml.fixef["x"]) < 0.5 * ml.se["x"]


# --------------------------------------------------------------------------- acceptance


def _independent_exact_ml(df):
    """β, φ and the log-likelihood of McCulloch's model with φ estimated, by scipy quad over
    u ~ Exp(1) and BFGS (code independent of the package)."""
    groups = [(d["y"].to_numpy(), d["x"].to_numpy()) for _, d in df.groupby("g")]

    def loglik(b, phi):
        tot = 0.0
        for y, x in groups:
            r = y - b * x
            n, s1, s2 = len(r), float(r.sum()), float(r @ r)
            c = -0.5 * n * math.log(2 * math.pi * phi)
            # u ~ Exp(1) written in w = u^½ (density 2w e^{-w²}), a smooth integrand for quad;
            # Σ(r - w)² = Σr² - 2wΣr + nw²
            f = lambda w: 2 * w * math.exp(c - (s2 - 2 * w * s1 + n * w * w) / (2 * phi) - w * w)  # noqa: E731
            tot += math.log(integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0])
        return tot

    r = optimize.minimize(lambda th: -loglik(th[0], math.exp(th[1])), [5.0, 0.0], method="BFGS",
                          options={"gtol": 1e-8, "eps": 1e-7})
    return r.x[0], math.exp(r.x[1]), -r.fun


def test_acceptance_q50_exact_ml_and_compare():
    """McCulloch's model with q = 50: gb.fit(method="agq") is the exact ML (β and φ estimated)
    to 1e-5 in β and log-likelihood; compare(agq, joint, hmc) returns all three, converged."""
    df = simulate_normal_exponential(np.random.default_rng(2024), 50)
    spec = mcculloch_spec(phi=None)
    ml = fit(spec, df)
    b_ref, phi_ref, ll_ref = _independent_exact_ml(df)
    assert ml.fixef["x"] == pytest.approx(b_ref, abs=1e-5)
    assert ml.loglik == pytest.approx(ll_ref, abs=1e-5)
    assert ml.phi == pytest.approx(phi_ref, rel=1e-4)
    cmp = gb.compare(spec, df, methods=["agq", "joint", "hmc"], progress=False,
                     options={"hmc": {"draws": 1000, "tune": 1000, "chains": 2, "seed": 5}})
    assert set(cmp.fits) == {"agq", "joint", "hmc"} and not cmp.errors
    for m, f in cmp.fits.items():
        assert f.converged, (m, f.messages)
    kinds = cmp.table.drop_duplicates("method").set_index("method")["estimate_kind"]
    assert kinds.to_dict() == {"agq": "ml", "joint": "mode", "hmc": "mean"}
    # mode versus expectation: the joint mode is far from ML, the posterior mean is not
    assert abs(cmp.fits["joint"].fixef["x"] - b_ref) > 0.3
    assert abs(cmp.fits["hmc"].fixef["x"] - b_ref) < 0.5 * ml.se["x"]
