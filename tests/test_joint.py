"""method="joint": the joint (h-likelihood) mode of (β, u) at fixed θ, checked against
brute-force maximization of the joint log-density with dense matrices built here from the
raw data (no glmmbayes code in the reference computation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from scipy.linalg import block_diag

from glmmbayes import datasets
from glmmbayes.api import fit
from glmmbayes.errors import SpecError
from glmmbayes.methods import joint

MODE_TOL = 1e-6  # absolute, on β and on the random effects
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _cbpp_dense():
    d = datasets.load("cbpp")
    per = d["period"].astype(str).to_numpy()
    X = np.column_stack([np.ones(len(d))] + [(per == k).astype(float) for k in ("2", "3", "4")])
    Z = pd.get_dummies(d["herd"]).to_numpy(float)  # herd levels in R's order
    y = d["incidence"].to_numpy(float)
    n = d["size"].to_numpy(float)
    return d, X, Z, y, n


def _binom_negjoint(X, Z, y, n, prior_prec):
    """-log f(y, r) for r ~ N(0, prior_prec⁻¹) on the linear predictor Xβ + Zr, with
    gradient and Hessian, parameter vector (β, r)."""
    p = X.shape[1]
    C = np.hstack([X, Z])
    const = float(np.sum(special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)))
    _, logdet = np.linalg.slogdet(prior_prec)
    q = Z.shape[1]

    def f(x):
        eta = C @ x
        r = x[p:]
        ll = np.sum(y * eta - n * np.logaddexp(0.0, eta)) + const
        lp = -0.5 * r @ prior_prec @ r + 0.5 * logdet - 0.5 * q * np.log(2 * np.pi)
        return -(ll + lp)

    def g(x):
        mu = special.expit(C @ x)
        gr = -C.T @ (y - n * mu)
        gr[p:] += prior_prec @ x[p:]
        return gr

    def h(x):
        mu = special.expit(C @ x)
        H = C.T @ ((n * mu * (1 - mu))[:, None] * C)
        H[p:, p:] += prior_prec
        return H

    return f, g, h


def _brute(f, g, h, x0):
    """scipy's trust-region Newton to the optimum, then Newton polish until the gradient is at
    round-off (trust-exact may stop with "bad approximation" there, which is success)."""
    r = optimize.minimize(f, x0, jac=g, hess=h, method="trust-exact", options={"gtol": 1e-9})
    x = r.x
    for _ in range(5):
        x = x - np.linalg.solve(h(x), g(x))
    step = np.linalg.solve(h(x), g(x))
    assert np.max(np.abs(step)) < 1e-9, (r.message, np.max(np.abs(step)))
    return x


@pytest.fixture(scope="module")
def cbpp_fixed():
    d = datasets.load("cbpp")
    return fit(CBPP, d, method="joint", theta={"herd.(Intercept)": 0.7}, family="binomial")


def test_cbpp_mode_equals_brute_force_in_u_and_b(cbpp_fixed):
    """At θ fixed the mode equals scipy's maximization of log f(y, u | β, θ) (u spherical) and,
    up to b = Λu, of log f(y, b | β, θ) with b ~ N(0, ΛΛ'): the β mode is the same in u or b
    because the map is linear (only a constant Jacobian differs)."""
    f = cbpp_fixed
    _, X, Z, y, n = _cbpp_dense()
    sd = 0.7
    q, p = Z.shape[1], X.shape[1]
    # spherical u: linear predictor Xβ + (Z sd) u, u ~ N(0, I)
    fu = _brute(*_binom_negjoint(X, Z * sd, y, n, np.eye(q)), np.zeros(p + q))
    # b = sd u: b ~ N(0, sd² I)
    fb = _brute(*_binom_negjoint(X, Z, y, n, np.eye(q) / sd**2), np.zeros(p + q))
    assert np.max(np.abs(f.beta_hat - fu[:p])) < MODE_TOL
    assert np.max(np.abs(f.u - fu[p:])) < MODE_TOL
    assert np.max(np.abs(fb[:p] - fu[:p])) < MODE_TOL
    assert np.max(np.abs(f.ranef["herd"].to_numpy().ravel() - fb[p:])) < MODE_TOL
    # the joint log-density reported at the mode (u parameterization), and its b version
    fun_u = _binom_negjoint(X, Z * sd, y, n, np.eye(q))[0]
    fun_b = _binom_negjoint(X, Z, y, n, np.eye(q) / sd**2)[0]
    assert f.details.joint_loglik == pytest.approx(-fun_u(fu), abs=1e-8)
    assert f.details.joint_loglik_b == pytest.approx(-fun_b(fb), abs=1e-8)
    # SEs: the β block of the inverse joint Hessian (logit is canonical: observed = expected)
    H = _binom_negjoint(X, Z * sd, y, n, np.eye(q))[2](fu)
    assert np.allclose(f.vcov_beta, np.linalg.inv(H)[:p, :p], rtol=1e-6, atol=1e-12)


def test_fit_metadata(cbpp_fixed):
    f = cbpp_fixed
    assert f.method == "joint" and f.estimate_kind == "mode"
    assert f.loglik is None and f.aic is None
    assert f.details.parameterization == "spherical u: b = Λ(θ) u, u ~ N(0, I)"
    assert f.details.theta_source == "fixed"
    assert f.theta_hat == pytest.approx([0.7])
    assert f.converged and f.details.pirls_converged
    assert "conditional on theta" in f.details.se_note


def test_theta_forms_agree(cbpp_fixed):
    d = datasets.load("cbpp")
    g = fit(CBPP, d, method="joint", theta=np.array([0.7]), family="binomial")
    assert np.allclose(g.beta_hat, cbpp_fixed.beta_hat, atol=1e-12)
    with pytest.raises(SpecError, match="missing"):
        fit(CBPP, d, method="joint", theta={"herd": 0.7}, family="binomial")
    with pytest.raises(SpecError, match=">= 0"):
        fit(CBPP, d, method="joint", theta=[-0.1], family="binomial")
    with pytest.raises(SpecError, match="1 values"):
        fit(CBPP, d, method="joint", theta=[0.1, 0.2], family="binomial")
    with pytest.raises(SpecError, match="theta must be"):
        fit(CBPP, d, method="joint", theta="reml", family="binomial")


def test_theta_sources():
    d = datasets.load("cbpp")
    jp = fit(CBPP, d, method="joint", family="binomial")  # default theta="pql"
    pq = fit(CBPP, d, method="pql", family="binomial")
    assert jp.details.theta_source == "pql"
    assert np.allclose(jp.theta_hat, pq.theta_hat)  # σ θ_rel: the RE sd glmmPQL prints
    assert jp.theta_hat[0] == pytest.approx(0.5563535, rel=2e-3)
    jl = fit(CBPP, d, method="joint", theta="laplace", family="binomial")
    la = fit(CBPP, d, method="laplace", family="binomial")
    assert np.allclose(jl.theta_hat, la.theta_hat)
    assert jl.details.theta_source == "laplace"


def test_fixed_dispersion_pql_is_the_joint_mode_at_its_theta():
    """Breslow–Clayton PQL (σ² = 1) at convergence is joint maximization at its own θ
    (McCulloch: "PQL corresponds to joint maximization with normal random effects")."""
    d = datasets.load("cbpp")
    pq = fit(CBPP, d, method="pql", dispersion="fixed", tol=1e-20, niter=50, family="binomial")
    jm = fit(CBPP, d, method="joint", theta=pq.theta_hat, family="binomial")
    assert np.max(np.abs(jm.beta_hat - pq.beta_hat)) < MODE_TOL
    assert np.max(np.abs(jm.u - pq.u)) < MODE_TOL
    assert np.allclose(jm.vcov_beta, pq.vcov_beta, rtol=1e-5)


def test_correlated_slope_mode_same_in_u_and_b():
    """Random intercept and urban slope by district (a full 2x2 Λ): the (β, b) mode of
    log f(y, b) with b_j ~ N(0, TT') equals our (β, Λu) mode."""
    d = datasets.load("Contraception")
    T = np.array([[0.6, 0.0], [-0.55, 0.4]])
    theta = [T[0, 0], T[1, 0], T[1, 1]]  # lme4's column-wise order
    f = fit("use ~ age + I(age^2) + urban + (urban | district)", d, method="joint", theta=theta, family="binomial")
    dist = d["district"].cat.remove_unused_categories()
    codes = dist.cat.codes.to_numpy()
    m = len(dist.cat.categories)
    urb = (d["urban"] == "Y").to_numpy(float)
    Z = np.zeros((len(d), 2 * m))
    Z[np.arange(len(d)), 2 * codes] = 1.0
    Z[np.arange(len(d)), 2 * codes + 1] = urb
    age = d["age"].to_numpy(float)
    X = np.column_stack([np.ones(len(d)), age, age**2, urb])
    y = (d["use"] == "Y").to_numpy(float)
    n = np.ones_like(y)
    Sinv = np.linalg.inv(T @ T.T)
    prec = block_diag(*([Sinv] * m))
    fb = _brute(*_binom_negjoint(X, Z, y, n, prec), np.zeros(X.shape[1] + 2 * m))
    p = X.shape[1]
    assert np.max(np.abs(f.beta_hat - fb[:p])) < MODE_TOL
    b_ours = f.ranef["district"].to_numpy().ravel()
    assert np.max(np.abs(b_ours - fb[p:])) < MODE_TOL
    # and in u directly: Λ = I_m ⊗ T
    Lam = np.kron(np.eye(m), T)
    fu = _brute(*_binom_negjoint(X, Z @ Lam, y, n, np.eye(2 * m)), np.zeros(p + 2 * m))
    assert np.max(np.abs(f.u - fu[p:])) < MODE_TOL
    assert np.max(np.abs(fu[:p] - fb[:p])) < MODE_TOL


def test_docstring_explains_parameterization():
    assert "Jacobian" in joint.__doc__ or "log|det Λ|" in joint.__doc__
    assert "seed 000" in joint.__doc__


def test_gaussian_lmm_pql_and_joint_reduce_to_ml():
    """For the LMM, PQL is one ML fit and the joint mode at the ML θ is the ML β and BLUPs."""
    d = datasets.load("sleepstudy")
    form = "Reaction ~ Days + (Days | Subject)"
    la = fit(form, d, method="laplace", family="gaussian", REML=False)
    pq = fit(form, d, method="pql", family="gaussian", REML=False)
    jl = fit(form, d, method="joint", family="gaussian", REML=False, theta="laplace")
    for g in (pq, jl):
        assert np.allclose(g.beta_hat, la.beta_hat, rtol=1e-6)
        assert np.allclose(g.se, la.se, rtol=1e-4)
        assert np.allclose(g.ranef["Subject"], la.ranef["Subject"], rtol=1e-4, atol=1e-4)
        assert np.allclose(g.varcorr["sdcor"], la.varcorr["sdcor"], rtol=1e-4)
    assert pq.details.iterations == 2
    with pytest.raises(SpecError, match="phi"):
        fit(form, d, method="joint", family="gaussian", theta=la.theta_hat)
    jf = fit(form, d, method="joint", family="gaussian", theta=la.theta_hat, phi=la.phi)
    assert np.allclose(jf.beta_hat, la.beta_hat, rtol=1e-6)
