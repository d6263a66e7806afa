"""method="pql": parity with MASS::glmmPQL and independent checks of the working-LMM iteration.

References (tests/reference/*.json, key "pql") were produced in R by
    MASS::glmmPQL(fixed, random = ~ ... | group, family = binomial, data = ...)
with summary(fit)$tTable for fixef/se and VarCorr(fit) printed into "varcorr".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from glmmbayes import datasets
from glmmbayes.api import design as make_design
from glmmbayes.api import fit, run_method
from glmmbayes.errors import SpecError
from glmmbayes.methods import pql

REF = Path(__file__).parent / "reference"

# tolerances: fixed here, never loosened to make a test pass
FIXEF_TOL = 2e-3  # relative; absolute when |reference| < 1
SE_TOL = 0.02  # relative
SD_TOL = 2e-3  # relative, random-effect and residual sd from the printed VarCorr
CORR_TOL = 1e-3  # absolute: glmmPQL prints correlations to 3 decimals
MME_TOL = 1e-6


def _data(name: str) -> pd.DataFrame:
    d = datasets.load(name)
    if name == "Contraception":
        d["ch"] = pd.Categorical(np.where(d.livch != "0", "Y", "N"), categories=["N", "Y"])
    return d


def _ref(key: str) -> dict:
    return json.loads((REF / f"{key}.json").read_text())


def _parse_varcorr(lines: list[str]):
    """(sd per coefficient name, residual sd, correlations) from lme's printed VarCorr."""
    sds, corrs, resid = {}, [], None
    for ln in lines[2:]:
        tok = ln.split()
        if not tok:
            continue
        if tok[0] == "Residual":
            resid = float(tok[2])
            continue
        sds[tok[0]] = float(tok[2])
        corrs += [float(c) for c in tok[3:] if c != "(Intr)"]
    return sds, resid, corrs


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / np.maximum(np.abs(b), 1.0)


PARITY = ["cbpp_herd", "contraception_district", "contraception_urban_slope", "bacteria_pql"]


@pytest.fixture(scope="module")
def parity_fits():
    out = {}
    for key in PARITY:
        ref = _ref(key)
        with _nowarn():
            out[key] = fit(ref["formula"], _data(ref["data"]), method="pql", family=ref["family"])
    return out


class _nowarn:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")  # a PQL parity fit must not warn
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


@pytest.mark.parametrize("key", PARITY)
def test_glmmpql_parity(parity_fits, key):
    ref = _ref(key)["pql"]
    f = parity_fits[key]
    names = list(ref["fixef"])
    assert list(f.fixef.index) == names
    fe = np.array([ref["fixef"][n] for n in names])
    se = np.array([ref["se"][n] for n in names])
    assert np.max(_rel(f.fixef.to_numpy(), fe)) < FIXEF_TOL
    assert np.max(np.abs(f.se.to_numpy() / se - 1.0)) < SE_TOL
    sds, resid, corrs = _parse_varcorr(ref["varcorr"])
    vc = f.varcorr
    var_rows = vc[vc["var2"].isna()]
    ours = dict(zip(var_rows["var1"], var_rows["sdcor"]))
    assert set(ours) == set(sds)
    for nm, sd in sds.items():
        assert abs(ours[nm] / sd - 1.0) < SD_TOL, nm
    assert abs(f.sigma / resid - 1.0) < SD_TOL
    assert abs(f.details.sigma / resid - 1.0) < SD_TOL
    cor_rows = vc[vc["var2"].notna()]
    assert len(cor_rows) == len(corrs)
    for c_ours, c_ref in zip(cor_rows["sdcor"], corrs):
        assert abs(c_ours - c_ref) < CORR_TOL
    assert f.converged and f.details.pql_converged
    assert f.details.iterations >= 1 and f.details.iterations <= 10  # glmmPQL's niter


def test_glmmpql_parity_nested_guimmun():
    """Mothers within communities (glmmPQL(random = ~ 1 | comm/mom)): PQL's mother sd 2.21 is
    glmmPQL's, twice the Laplace value, and its dispersion is well below one."""
    ref = _ref("guimmun_nested")
    r = ref["pql"]
    with _nowarn():
        f = fit(ref["formula"], _data("guImmun"), method="pql", family="binomial")
    names = list(r["fixef"])
    assert list(f.fixef.index) == names
    assert np.max(_rel(f.fixef.to_numpy(), [r["fixef"][n] for n in names])) < FIXEF_TOL
    assert np.max(np.abs(f.se.to_numpy() / np.array([r["se"][n] for n in names]) - 1.0)) < SE_TOL
    sd = f.varcorr.set_index("grp")["sdcor"]
    for grp, value in r["sd"].items():
        assert abs(sd[grp] / value - 1.0) < SD_TOL, grp
    assert abs(f.sigma / r["sigma"] - 1.0) < SD_TOL


def test_pql_has_no_likelihood(parity_fits):
    f = parity_fits["cbpp_herd"]
    assert f.method == "pql" and f.estimate_kind == "pql"
    assert f.loglik is None and f.aic is None and f.bic is None
    assert "no likelihood" in f.summary()
    assert f.details.dispersion == "estimated"
    assert f.phi == pytest.approx(f.details.sigma ** 2)
    # reported θ is the absolute RE scale: σ θ_rel
    assert f.theta_hat == pytest.approx(f.details.sigma * f.details.theta_relative)
    # conditional modes are spherical on the reported θ and reproduce the fitted η
    d = f.design
    s = d.structure
    eta = d.X @ f.beta_hat + d.offset + s.zl_mult(s.zl_values(f.theta_hat), f.u)
    eta_rel = d.X @ f.beta_hat + d.offset + s.zl_mult(s.zl_values(f.details.theta_relative), f.u * f.details.sigma)
    assert np.allclose(eta, eta_rel, atol=1e-12)
    assert len(f.u_condvar) == 1 and f.u_condvar[0].shape == (15, 1, 1)


def test_first_step_does_not_stick_at_zero(parity_fits):
    # cbpp's first working LMM: L-BFGS-B from θ = 1 jumps to θ = 0, a stationary point of
    # the (even in θ) deviance; glmmPQL's answer has herd sd 0.556, far from 0
    f = parity_fits["cbpp_herd"]
    assert f.details.iterations > 1
    assert f.theta_hat[0] > 0.5


def _dense_Z_Lambda(design, theta):
    """Dense Z and block-diagonal Λ built from the raw term codes and covariates."""
    Zs, Ls = [], []
    off = 0
    for t in design.terms:
        k, m = t.k, t.nlevels
        Z = np.zeros((design.n, m * k))
        for a in range(k):
            Z[np.arange(design.n), t.codes * k + a] = t.X[:, a]
        nth = k * (k + 1) // 2
        T = np.zeros((k, k))
        cols, rows = np.triu_indices(k)  # column-wise lower triangle (lme4 order)
        T[rows, cols] = theta[off : off + nth]
        off += nth
        Zs.append(Z)
        Ls.append(np.kron(np.eye(m), T))
    from scipy.linalg import block_diag

    return np.hstack(Zs), block_diag(*Ls)


def _logit_working(eta, y, n):
    mu = special.expit(eta)
    dmu = mu * (1 - mu)
    return eta + (y - mu) / dmu, n * dmu


def test_fixed_dispersion_crossed_mixed_model_equations():
    """VerbAgg crossed (1|id) + (1|item), σ² = 1: converges, and at the fixed point (β, u)
    solve the working LMM's mixed-model equations, recomputed densely here."""
    d = _data("VerbAgg")
    f = fit("r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)", d, method="pql",
            dispersion="fixed", tol=1e-14, niter=30, family="binomial")
    assert f.converged and f.details.pql_converged
    assert f.details.dispersion == "fixed" and f.phi == 1.0
    assert f.details.iterations < 30
    assert [t.group_name for t in f.design.terms] == ["id", "item"]
    D = f.design
    X = D.X
    Z, Lam = _dense_Z_Lambda(D, f.theta_hat)
    y = (d["r2"] == "Y").to_numpy(float)
    # 1) the MMEs of the final working LMM (its z and W as stored)
    z, W = f.details.working_response, f.details.working_weights
    ZL = Z @ Lam
    C = np.hstack([X, ZL])
    M = C.T @ (W[:, None] * C)
    M[X.shape[1]:, X.shape[1]:] += np.eye(ZL.shape[1])
    sol = np.linalg.solve(M, C.T @ (W * z))
    p = X.shape[1]
    assert np.max(np.abs(sol[:p] - f.beta_hat)) < MME_TOL
    assert np.max(np.abs(sol[p:] - f.u)) < MME_TOL
    # 2) a PQL fixed point: the working LMM recomputed from the *final* η has the same solution
    eta = X @ f.beta_hat + ZL @ f.u
    z2, W2 = _logit_working(eta, y, np.ones_like(y))
    M2 = C.T @ (W2[:, None] * C)
    M2[p:, p:] += np.eye(ZL.shape[1])
    sol2 = np.linalg.solve(M2, C.T @ (W2 * z2))
    assert np.max(np.abs(sol2[:p] - f.beta_hat)) < MME_TOL
    assert np.max(np.abs(sol2[p:] - f.u)) < MME_TOL
    # SEs with σ² = 1: the β block of M⁻¹
    assert np.allclose(f.vcov_beta, np.linalg.inv(M)[:p, :p], rtol=1e-8, atol=1e-12)


def test_fixed_dispersion_deviance_is_the_gaussian_loglik():
    """The σ² = 1 working-LMM deviance equals -2 log N(z; Xβ̂, ZΛΛ'Z' + W⁻¹) (dense, scipy),
    and the reported θ minimizes it."""
    d = _data("cbpp")
    D = make_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
    f = run_method(D, "pql", {"dispersion": "fixed"})
    z, W = f.details.working_response, f.details.working_weights
    X = D.X

    def dense_dev(th):
        Z, Lam = _dense_Z_Lambda(D, th)
        V = Z @ Lam @ Lam.T @ Z.T + np.diag(1.0 / W)
        Vi = np.linalg.inv(V)
        beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ z)
        return -2.0 * stats.multivariate_normal(X @ beta, V).logpdf(z), beta

    dev, beta = dense_dev(f.theta_hat)
    from glmmbayes.core import objective as ob

    sol = ob.lmm(D.problem(y=z, wt=W), f.theta_hat)
    assert pql.lmm_deviance_fixed_sigma(sol, W) == pytest.approx(dev, rel=1e-10)
    assert f.details.lmm_deviance == pytest.approx(dev, rel=1e-10)
    assert np.allclose(beta, f.beta_hat, atol=1e-8)
    for h in (-1e-3, 1e-3):
        assert dense_dev(f.theta_hat + h)[0] > dev


def test_nested_and_three_terms_run():
    d = datasets.load("grouseticks")
    f = fit("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", d,
            method="pql", family="poisson", dispersion="fixed")
    assert f.converged
    assert [t.group_name for t in f.design.terms] == ["INDEX", "BROOD", "LOCATION"]
    assert np.all(np.isfinite(f.se))


def test_niter_limit_reported():
    d = _data("Contraception")
    with pytest.warns(Warning, match="PQL did not converge in 1 iterations"):
        f = fit("use ~ age + I(age^2) + urban + livch + (1 | district)", d, method="pql", niter=1, family="binomial")
    assert not f.converged and not f.details.pql_converged
    assert f.details.iterations == 1


def test_bad_options():
    d = _data("cbpp")
    form = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.raises(SpecError, match="dispersion"):
        fit(form, d, method="pql", dispersion="free", family="binomial")
    with pytest.raises(SpecError, match="niter"):
        fit(form, d, method="pql", niter=0, family="binomial")


def test_hessian_option_checks_final_theta():
    ref = _ref("bacteria_pql")
    f = fit(ref["formula"], _data(ref["data"]), method="pql", hessian=True, family="binomial")
    H = np.asarray(f.optimizer.hessian)
    assert H.shape == (1, 1) and H[0, 0] > 0
    assert f.converged and not f.messages
