"""The numerical core against independent dense computations."""

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from conftest import load_reference, reference_data
from glmmbayes.core import objective as ob
from glmmbayes.core.linalg import factorize, leverages
from glmmbayes.core.optimize import minimize_deviance
from glmmbayes.core.pirls import pirls


def _dense_zl(design, theta):
    s = design.structure
    V = s.zl_values(theta)
    cols = []
    for i in range(s.q):
        e = np.zeros(s.q)
        e[i] = 1.0
        cols.append(s.zl_mult(V, e))
    return np.column_stack(cols), V


CASES = ["cbpp_herd", "cbpp_herd_obs", "verbagg_crossed", "contraception_urban_slope", "grouseticks_nested"]


@pytest.mark.parametrize("case", CASES)
def test_blocked_factor_matches_dense(case):
    ref = load_reference(case)
    d = gb.design(gb.Spec(ref["formula"], family=ref["family"]), reference_data(ref["data"]))
    _check_factor_against_dense(d, np.array(list(ref["laplace"]["theta"].values())))


@pytest.mark.parametrize("nested", [False, True])
def test_blocked_factor_of_a_vector_head_with_a_tail_matches_dense(nested):
    """A random slope beside an intercept term: L21 from per-(tail column, head level) blocks,
    S from a dense product (crossed: 2,500 of 6,000 level pairs) or from the column pairs
    (nested: one tail level per head level)."""
    rng = np.random.default_rng(5)
    n = 3000
    g = rng.integers(0, 200, n)
    h = g % 30 if nested else rng.integers(0, 30, n)
    data = pd.DataFrame({"g": g.astype(str), "h": h.astype(str), "x": rng.normal(size=n)})
    data["y"] = rng.poisson(np.exp(0.3 + 0.2 * data.x), n)
    d = gb.design(gb.Spec("y ~ x + (x | g) + (1 | h)", family="poisson"), data)
    assert d.structure.k[0] == 2 and d.structure.sparse_cross() == nested
    assert not d.structure.dense_zl and d.structure.cross_pattern()["head_level"] is not None
    _check_factor_against_dense(d, np.array([0.7, -0.2, 0.4, 0.5]))


def _check_factor_against_dense(d, theta):
    rng = np.random.default_rng(0)
    ZL, V = _dense_zl(d, theta)
    w = rng.uniform(0.1, 2.0, d.n)
    A = ZL.T @ (w[:, None] * ZL) + np.eye(d.structure.q)
    f = factorize(d.structure, V, w, d.X)
    assert abs(f.ldL2 - np.linalg.slogdet(A)[1]) < 1e-8 * abs(f.ldL2) + 1e-8
    b = rng.standard_normal(d.structure.q)
    assert np.allclose(f.solve(b), np.linalg.solve(A, b), atol=1e-9)
    Ainv = np.linalg.inv(A)
    assert np.allclose(leverages(f, V), np.einsum("ij,jk,ik->i", ZL, Ainv, ZL), atol=1e-9)
    # the bordered system: Schur complement of X gives RX
    C = ZL.T @ (w[:, None] * d.X)
    XtWX = d.X.T @ (w[:, None] * d.X)
    schur = XtWX - C.T @ np.linalg.solve(A, C)
    assert np.allclose(np.linalg.inv(f.rx_inverse()), schur, rtol=1e-8, atol=1e-8)
    # conditional covariance blocks are the diagonal blocks of A^{-1}
    blocks = f.inverse_diag_blocks()
    s = d.structure
    for t, (term, B) in enumerate(zip(d.terms, blocks)):
        a = s.u_offsets[t]
        for j in (0, term.nlevels - 1):
            sl = slice(a + j * term.k, a + (j + 1) * term.k)
            assert np.allclose(B[j], Ainv[sl, sl], atol=1e-10)


def test_a_diagonal_lead_of_the_tail_is_eliminated_first():
    """S = A22 - L21 L21' whose leading block is diagonal (a nested design's middle level under
    an observation-level first term): its factor and the lower triangle of its inverse by blocks
    equal LAPACK's, reading S's lower triangle only; the design detects the lead (none where the
    middle level is crossed with the first), and the blocked factor of such a design agrees
    with the dense A in every product, solve, inverse block and projection."""
    from glmmbayes.core import linalg as la

    rng = np.random.default_rng(4)
    n, d = 150, 100
    L0 = np.tril(rng.normal(size=(n, n)), -1) * 0.3
    L0[:d, :d] = 0.0
    L0[np.arange(n), np.arange(n)] = rng.uniform(0.5, 2.0, n)
    S = L0 @ L0.T  # its first d rows of L0 hold only their diagonal: S's d x d lead is diagonal
    lower_only = np.where(np.tril(np.ones((n, n))) > 0, S, np.nan)
    L = la.lead_cholesky(lower_only, d)
    np.testing.assert_allclose(L, np.linalg.cholesky(S), rtol=1e-12, atol=1e-12)
    inv = la.lead_inverse_lower(L, d)
    ref = np.linalg.inv(S)  # S's condition number is 8e4: entries agree to rounding of the largest
    np.testing.assert_allclose(inv, np.tril(ref), rtol=0, atol=1e-12 * np.abs(ref).max())
    assert np.abs(S @ (inv + np.tril(inv, -1).T) - np.eye(n)).max() < 1e-11
    with pytest.raises(np.linalg.LinAlgError):
        la.lead_cholesky(-S, d)
    D = np.diag(rng.uniform(0.5, 2.0, n))  # all lead: a two-level nested design's tail
    np.testing.assert_allclose(la.lead_cholesky(D.copy(), n), np.sqrt(D), rtol=1e-15)
    np.testing.assert_allclose(la.lead_inverse_lower(np.sqrt(D), n), np.linalg.inv(D), rtol=1e-15)

    rows = 600
    loc = rng.integers(0, 25, rows)
    brood = loc * 4 + rng.integers(0, 4, rows)  # 100 broods, each in one location
    data = pd.DataFrame({"obs": np.arange(rows).astype(str), "brood": brood.astype(str),
                         "loc": loc.astype(str), "x": rng.normal(size=rows)})
    data["y"] = rng.poisson(np.exp(0.5 + 0.3 * data.x))
    nested = gb.design(gb.Spec("y ~ x + (1 | obs) + (1 | brood) + (1 | loc)", family="poisson"), data)
    s = nested.structure
    assert s.q2 >= la._LEAD_MIN and s.diagonal_lead() == s.terms[1].nlevels
    _check_factor_against_dense(nested, np.array([0.6, 0.9, 0.4]))
    data["brood"] = rng.integers(0, 100, rows).astype(str)  # broods crossed with the observations' locations
    data["obs"] = (np.arange(rows) // 2).astype(str)  # two rows per first-term level
    crossed = gb.design(gb.Spec("y ~ x + (1 | obs) + (1 | brood) + (1 | loc)", family="poisson"), data)
    assert crossed.structure.diagonal_lead() == 0


def test_the_inverse_from_a_factor_has_both_triangles_exactly():
    """cho_inverse fills the upper triangle from potri's lower one bit for bit (the diagonal is
    doubled and halved, which is exact), and the result is the inverse."""
    from glmmbayes.core import linalg as la

    rng = np.random.default_rng(7)
    for n in (1, 5, 40):
        A = rng.standard_normal((n, n))
        S = A @ A.T + n * np.eye(n)
        low = la.cho_inverse_lower(la.cholesky_lower(S.copy()))
        full = la.cho_inverse(la.cholesky_lower(S.copy()))
        assert np.array_equal(np.tril(full), low) and np.array_equal(full, full.T)
        np.testing.assert_allclose(full @ S, np.eye(n), rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", ["cbpp_herd", "verbagg_crossed", "grouseticks_nested"])
def test_laplace_beta_gradient_matches_finite_differences(case):
    ref = load_reference(case)
    d = gb.design(gb.Spec(ref["formula"], family=ref["family"]), reference_data(ref["data"]))
    prob = d.problem()
    theta = np.array(list(ref["laplace"]["theta"].values())) * 1.1
    beta = np.array(list(ref["laplace"]["fixef"].values())) + 0.05
    st = pirls(prob, theta, beta, None)
    _, g = ob.laplace_gradient(prob, st, theta=False)
    warm = ob.WarmStart(d.structure.q)
    warm.u = st.u
    fd = []
    for j in range(len(beta)):
        e = np.zeros(len(beta))
        e[j] = 1e-5
        fd.append((ob.laplace(prob, theta, beta + e, warm) - ob.laplace(prob, theta, beta - e, warm)) / 2e-5)
    assert np.allclose(g, fd, rtol=1e-5, atol=1e-4)


def test_warm_start_answers_a_repeated_question_with_its_last_state(cbpp):
    """The optimum is asked for again after the optimizer evaluated it last: the same state,
    not a second PIRLS; any other θ, β, φ, information or a state put in from outside re-solves."""
    d = gb.design(gb.Spec("cbind(incidence, size - incidence) ~ period + (1 | herd)", family="binomial"), cbpp)
    prob = d.problem()
    warm = ob.WarmStart(d.structure.q, np.zeros(d.p))
    theta, beta = np.array([0.7]), np.array([-1.4, -1.0, -1.1, -1.6])
    st = warm.solve(prob, theta, fit_beta=True)
    assert warm.solve(prob, theta.copy(), fit_beta=True) is st and warm.evaluations == 1
    assert warm.solve(prob, theta, fit_beta=True, hessian="expected") is not st
    st2 = warm.solve(prob, theta, beta)
    assert warm.solve(prob, theta, beta.copy()) is st2
    assert warm.solve(prob, theta, beta + 1e-9) is not st2
    st3 = warm.solve(prob, theta + 1e-9, beta)
    warm.update(st2)
    assert warm.solve(prob, theta + 1e-9, beta) is not st3
    assert warm.evaluations == 7  # five solves, the update, one more solve


def test_optimizer_escapes_a_stationary_boundary():
    """Even in θ with its optimum inside: a start at the bound 0 (gradient 0) must move."""
    f = lambda x: (x[0] ** 2 - 0.16) ** 2 + (x[1] - 1) ** 2  # noqa: E731
    r = minimize_deviance(f, np.array([0.0, 0.0]), np.array([0.0, -np.inf]))
    assert abs(r.x[0] - 0.4) < 1e-5 and abs(r.x[1] - 1) < 1e-5


def test_optimizer_keeps_a_true_boundary_optimum():
    f = lambda x: (x[0] + 0.3) ** 2 + x[1] ** 2  # noqa: E731
    r = minimize_deviance(f, np.array([1.0, 1.0]), np.array([0.0, -np.inf]))
    assert r.x[0] == 0.0 and abs(r.x[1]) < 1e-6


def _grouped_binary(n=6000, m=600, seed=3):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, m, n)
    h = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.9, m)[g] + rng.normal(0, 0.3, m)[g] * x
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g.astype(str),
                         "h": h.astype(str), "w": rng.integers(1, 3, n).astype(float)})


def test_a_level_subsample_keeps_whole_groups_with_their_levels_renumbered():
    data = _grouped_binary()
    d = gb.design(gb.Spec("y ~ x + (1 | g) + (1 | h)", family="binomial", offset="w"), data)
    sub = d.level_subsample(4)
    keep = np.flatnonzero(d.terms[0].codes % 4 == 0)
    assert sub.n == len(keep) and sub.terms[0].nlevels == 150 and sub.terms[1].nlevels == 40
    for t, ts in zip(d.terms, sub.terms):
        assert np.array_equal(np.unique(ts.codes), np.arange(ts.nlevels))  # consecutive codes
        assert list(np.array(ts.levels)[ts.codes]) == list(np.array(t.levels)[t.codes[keep]])
        np.testing.assert_array_equal(ts.X, t.X[keep])
    for name in ("X", "y", "wt", "offset", "rows"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(d, name)[keep])
    assert sub.structure.q == 150 + 40 and list(sub.index) == list(d.index[keep])


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (x | g)"])
def test_a_large_fit_starts_from_stage_1_on_a_subsample_and_ends_at_the_same_optimum(monkeypatch, formula):
    """Thresholds lowered so that 6,000 rows count as large: stage 1 runs on every 4th group
    (its rows reported on the stage), and stage 2 reaches the optimum of the fit whose stage 1
    saw every row -- the deviance to 1e-8, the parameters to a thousandth of their standard
    errors (both stop where a Newton step would gain less than 1e-9, a few 1e-5 SE), and the
    standard errors to 1e-3 (forward differences of the gradient, O(h) = 1e-3 in the stage's
    whitened units, which differ with the start). nAGQ = 0, whose stage 1 is the answer,
    sees every row."""
    import glmmbayes.methods.ml as ml

    data = _grouped_binary()
    full = gb.fit(formula, data, family="binomial")
    monkeypatch.setattr(ml, "_SUBSAMPLE_MIN_ROWS", 5000)
    monkeypatch.setattr(ml, "_SUBSAMPLE_ROWS", 1500)
    monkeypatch.setattr(ml, "_SUBSAMPLE_MIN_LEVELS", 50)
    fit = gb.fit(formula, data, family="binomial")
    sub_rows = int(np.sum(pd.Series(data.g).astype("category").cat.codes % 4 == 0))
    assert fit.optimizer.stages["stage1"].rows == sub_rows and full.optimizer.stages["stage1"].rows is None
    assert fit.optimizer.stages["stage2"].rows is None
    assert abs(fit.loglik - full.loglik) < 1e-8
    np.testing.assert_allclose(fit.fixef, full.fixef, rtol=0, atol=1e-3 * full.se.min())
    np.testing.assert_allclose(fit.theta, full.theta, rtol=0, atol=1e-4)
    np.testing.assert_allclose(fit.se, full.se, rtol=1e-3)
    assert fit.messages == full.messages
    assert gb.fit(formula, data, family="binomial", nAGQ=0).optimizer.stages["stage1"].rows is None


def test_no_subsample_where_it_would_lose_a_fixed_effect_or_for_crossed_terms(monkeypatch):
    import glmmbayes.methods.ml as ml

    monkeypatch.setattr(ml, "_SUBSAMPLE_MIN_ROWS", 5000)
    monkeypatch.setattr(ml, "_SUBSAMPLE_ROWS", 1500)
    monkeypatch.setattr(ml, "_SUBSAMPLE_MIN_LEVELS", 50)
    data = _grouped_binary()
    codes = pd.Series(data.g).astype("category").cat.codes.to_numpy()
    data["site"] = np.where(codes % 4 == 1, "rare", "common")  # seen only in groups the subsample drops
    assert ml._subsample(gb.design(gb.Spec("y ~ x + site + (1 | g)", family="binomial"), data)) is None
    assert ml._subsample(gb.design(gb.Spec("y ~ x + (1 | g) + (1 | h)", family="binomial"), data)) is None
    assert ml._subsample(gb.design(gb.Spec("y ~ x + (1 | g)", family="binomial"), data)) is not None
    fit = gb.fit("y ~ x + site + (1 | g)", data, family="binomial")
    assert fit.optimizer.stages["stage1"].rows is None
    # a stage 1 on the subsample that does not converge: the full stage 1 instead
    import dataclasses

    stage1 = ml._stage1

    def failing_on_subsamples(design, *args):
        r = stage1(design, *args)
        return dataclasses.replace(r, success=False) if design.n < len(data) else r

    monkeypatch.setattr(ml, "_stage1", failing_on_subsamples)
    fit = gb.fit("y ~ x + (1 | g)", data, family="binomial")
    assert fit.optimizer.stages["stage1"].rows is None and fit.optimizer.stages["stage1"].nfev > 0


@pytest.mark.parametrize("interior", [False, True])
def test_restart_at_a_bound_only_where_the_probe_leads_further_in(interior):
    """At an optimum on the bound the optimizer probes 0.2 inside. Where the probe lies uphill
    with its slope back to the bound, it does not restart (no L-BFGS-B walk from the probe, and
    no second evaluation of the bound point);
    where the deviance falls further in from the probe (a lower interior minimum behind a
    boundary local minimum: t (t - 0.6)² - 0.1 t², minimum -0.042 at t = 0.694), it restarts
    and finds it."""
    calls = []

    def vg(x):
        calls.append(x.copy())
        t, y = x
        if interior:
            return t * (t - 0.6) ** 2 - 0.1 * t * t + (y - 1) ** 2, np.array(
                [(t - 0.6) * (3 * t - 0.6) - 0.2 * t, 2 * (y - 1)])
        # coupled: from the probe, L-BFGS-B would take several steps back along the bound
        return (t + 0.3) ** 2 + (y - 1 - t) ** 2, np.array([2 * (t + 0.3) - 2 * (y - 1 - t), 2 * (y - 1 - t)])

    r = minimize_deviance(lambda x: vg(x)[0], np.array([0.05, 0.0]), np.array([0.0, -np.inf]),
                          value_and_grad=vg, restart_at_bound=True)
    probe = max(i for i, c in enumerate(calls) if abs(c[0] - 0.2) < 1e-12)  # the restart's probe
    if interior:
        assert abs(r.x[0] - (2.6 + np.sqrt(2.44)) / 6) < 1e-5 and abs(r.x[1] - 1) < 1e-5
        assert any(0.2 < c[0] < 1.0 for c in calls[probe:])  # L-BFGS went on from the probe
    else:
        assert r.x[0] == 0.0 and abs(r.x[1] - 1) < 1e-6
        assert len(calls) == probe + 1  # the bound point's evaluation is remembered, not repeated


def test_partial_analytic_gradient_is_used():
    f = lambda x: np.sum((x - np.array([0.5, -2.0, 3.0])) ** 2)  # noqa: E731

    def vg(x):
        g = 2 * (x - np.array([0.5, -2.0, 3.0]))
        g[0] = np.nan  # left to finite differences
        return f(x), g

    P = np.eye(3)
    P[1:, 1:] = [[2.0, 0.0], [0.5, 1.0]]
    r = minimize_deviance(f, np.array([1.0, 0.0, 0.0]), np.array([0.0, -np.inf, -np.inf]), P,
                          hessian=True, value_and_grad=vg)
    assert np.allclose(r.x, [0.5, -2.0, 3.0], atol=1e-6)
    assert np.allclose(r.hessian, 2 * np.eye(3), atol=1e-4)


def _rosenbrock(x):
    f = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    g = np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)])
    return f, g


@pytest.mark.parametrize("objective, optimum, quadratic", [
    (_rosenbrock, [1.0, 1.0], True),
    # a quartic bottom: Newton steps gain a third at a time, so they cannot finish and L-BFGS resumes
    (lambda x: (np.sum((x - 0.5) ** 4), 4.0 * (x - 0.5) ** 3), [0.5, 0.5], False),
])
def test_newton_steps_finish_what_lbfgs_leaves_and_hand_back_where_they_cannot(objective, optimum, quadratic):
    """With a Hessian to compute anyway, L-BFGS stops once an iteration gains little and Newton
    steps with that Hessian finish: to the optimum as tight as L-BFGS's own tolerance."""
    r = minimize_deviance(lambda x: objective(x)[0], np.array([-1.2, 1.0]), np.array([-np.inf, 0.0]),
                          hessian=True, value_and_grad=objective)
    tight = minimize_deviance(lambda x: objective(x)[0], np.array([-1.2, 1.0]), np.array([-np.inf, 0.0]),
                              hessian=False, value_and_grad=objective)
    assert r.success
    assert r.fun <= tight.fun + 1e-12
    if quadratic:
        np.testing.assert_allclose(r.x, optimum, atol=1e-7)
        assert r.message.startswith("converged: Newton steps")
        # forward differences of the gradient with step 1e-3: an O(1e-3) relative error
        np.testing.assert_allclose(r.hessian, [[802.0, -400.0], [-400.0, 200.0]], rtol=3e-3)
    else:
        np.testing.assert_allclose(r.x, optimum, atol=2e-3)  # a quartic's flat bottom
        assert not r.message.startswith("converged: Newton steps")


@pytest.mark.parametrize("case", ["cbpp_herd", "cbpp_herd_obs", "verbagg_crossed", "grouseticks_nested",
                                  "contraception_urban_slope"])
@pytest.mark.parametrize("profiled", [False, True])
def test_laplace_theta_gradient_matches_finite_differences(case, profiled):
    """θ-gradient of the Laplace deviance (β fixed) and of the nAGQ=0 criterion (β profiled)."""
    ref = load_reference(case)
    d = gb.design(gb.Spec(ref["formula"], family=ref["family"]), reference_data(ref["data"]))
    prob = d.problem()
    theta = np.array(list(ref["laplace"]["theta"].values())) * 1.1 + 0.02
    beta = np.array(list(ref["laplace"]["fixef"].values())) + 0.05
    st = pirls(prob, theta, beta, None, fit_beta=profiled)
    gt, _ = ob.laplace_gradient(prob, st, profiled_beta=profiled, beta=False)
    warm = ob.WarmStart(d.structure.q, st.beta)
    warm.u = st.u

    def f(t):
        return ob.nagq0(prob, t, warm) if profiled else ob.laplace(prob, t, beta, warm)

    fd = []
    for j in range(len(theta)):
        e = np.zeros(len(theta))
        e[j] = 1e-5
        fd.append((f(theta + e) - f(theta - e)) / 2e-5)
    assert np.allclose(gt, fd, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("case", ["cbpp_probit", "contraception_cloglog", "oats_gamma_log", "oats_gaussian_log"])
@pytest.mark.parametrize("profiled", [False, True])
def test_expected_information_laplace_gradient_matches_finite_differences(case, profiled):
    """lme4's Laplace (Fisher weights in log|A|) with a non-canonical link: the θ-, β- and
    log φ-gradient of its deviance (β fixed) and of its nAGQ=0 criterion (β profiled), where
    the mode moves with the observed information."""
    ref = load_reference(case)
    spec = gb.Spec(ref["formula"], family=ref["family"], link=ref["link"])
    data = reference_data(ref["data"])
    d = gb.design(spec, data)
    prob = d.problem()
    f0 = gb.fit(spec, data, laplace="expected")
    disp = d.dispersion_estimated
    # off the optimum by a fraction of each standard error (age² in Contraception: 0.03 would
    # move the linear predictor by 12)
    theta, beta = f0.theta_hat * 1.1 + 0.02, f0.beta_hat + 0.3 * np.asarray(f0.se, float)
    phi = f0.phi * 1.3 if disp else 1.0
    st = pirls(prob, theta, beta, None, fit_beta=profiled, phi=phi, hessian="expected")
    assert st.converged
    grads = ob.laplace_gradient(prob, st, phi, profiled_beta=profiled, beta=not profiled, logphi=disp)
    analytic = np.concatenate([grads[0]] + ([] if profiled else [grads[1]]) + ([[grads[2]]] if disp else []))
    warm = ob.WarmStart(d.structure.q, st.beta)
    warm.u = st.u
    nth, p = len(theta), len(beta)

    def f(x):
        ph = float(np.exp(x[-1])) if disp else 1.0
        if profiled:
            return ob.nagq0(prob, x[:nth], warm, ph, "expected")
        return ob.laplace(prob, x[:nth], x[nth : nth + p], warm, ph, "expected")

    x0 = np.concatenate([theta] + ([] if profiled else [beta]) + ([[np.log(phi)]] if disp else []))
    fd = []
    for j in range(len(x0)):
        e = np.zeros(len(x0))
        e[j] = 1e-5
        fd.append((f(x0 + e) - f(x0 - e)) / 2e-5)
    assert np.allclose(analytic, fd, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("case", ["oats_gaussian_log", "oats_gamma_log", "salamanders_nb1", "grouseticks_nb2"])
@pytest.mark.parametrize("profiled", [False, True])
def test_laplace_log_dispersion_gradient_matches_finite_differences(case, profiled):
    """dD/dlog φ of the Laplace deviance (β fixed) and of the nAGQ=0 criterion (β profiled),
    for the dispersion families: gaussian and Gamma (whose score and weights scale as 1/φ),
    NB1 and NB2 (differenced per row)."""
    ref = load_reference(case)
    spec = gb.Spec(ref["formula"], family="nbinom2" if "glmmtmb_nb2" in ref else ref["family"], link=ref.get("link"))
    data = reference_data(ref["data"].removesuffix(".csv"))
    d = gb.design(spec, data)
    prob = d.problem()
    f0 = gb.fit(spec, data)
    theta, beta, phi = f0.theta_hat * 1.1 + 0.02, f0.beta_hat + 0.03, f0.phi * 1.3
    st = pirls(prob, theta, beta, None, fit_beta=profiled, phi=phi)
    _, _, gphi = ob.laplace_gradient(prob, st, phi, profiled_beta=profiled, beta=False, logphi=True)
    warm = ob.WarmStart(d.structure.q, st.beta)
    warm.u = st.u

    def f(lp):
        p = float(np.exp(lp))
        return ob.nagq0(prob, theta, warm, p) if profiled else ob.laplace(prob, theta, beta, warm, p)

    h = 1e-5
    fd = (f(np.log(phi) + h) - f(np.log(phi) - h)) / (2 * h)
    assert gphi == pytest.approx(fd, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days | Subject)",
                                     "Reaction ~ Days + (Days || Subject) + (1 | g5)",
                                     "Reaction ~ Days + (1 | Subject)"])
@pytest.mark.parametrize("reml", [False, True])
def test_lmm_gradient_matches_finite_differences(formula, reml):
    """θ-gradient of the profiled LMM deviance and REML criterion (with prior weights and a
    second, crossed term) against central differences."""
    d = reference_data("sleepstudy")
    d["g5"] = (d["Subject"].cat.codes % 5).astype("category")
    d["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(d))
    des = gb.design(gb.Spec(formula, family="gaussian", REML=reml, weights="w"), d)
    prob = des.problem()
    theta = des.structure.theta_start() * 0.7 + 0.05
    g = ob.lmm_gradient(prob, ob.lmm(prob, theta, reml), reml)
    h = 1e-6
    fd = [(ob.lmm(prob, theta + h * e, reml).deviance - ob.lmm(prob, theta - h * e, reml).deviance) / (2 * h)
          for e in np.eye(len(theta))]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reml", [False, True])
def test_crossed_scalar_lmm_gradient_from_the_inverse_diagonal(monkeypatch, reml):
    """All-scalar crossed terms take d log|A|/dθ_t = (2/θ_t)(q_t - tr_t(A^{-1})) from the per-term
    traces of A^{-1} (no pass over the rows): equal to the row-projection route and to central
    differences."""
    rng = np.random.default_rng(3)
    n = 900
    d = pd.DataFrame({"s": rng.integers(0, 120, n).astype(str), "t": rng.integers(0, 40, n).astype(str),
                      "x": rng.normal(size=n), "w": rng.uniform(0.5, 2.0, n)})
    d["dept"] = (d["t"].astype(int) % 6).astype(str)
    d["y"] = d.x + rng.normal(size=120)[d.s.astype(int)] + 0.5 * rng.normal(size=40)[d.t.astype(int)] + rng.normal(size=n)
    des = gb.design(gb.Spec("y ~ x + (1 | s) + (1 | t) + (1 | dept)", family="gaussian", REML=reml, weights="w"), d)
    prob = des.problem()
    theta = np.array([0.8, 0.45, 0.2])
    sol = ob.lmm(prob, theta, reml)
    assert ob._dlogdet_scalar_terms(prob.structure, sol.factor, sol.V) is not None
    g = ob.lmm_gradient(prob, sol, reml)
    monkeypatch.setattr(ob, "_THETA_DIAG_MIN", np.inf)  # force the row projections
    g_rows = ob.lmm_gradient(prob, sol, reml)
    np.testing.assert_allclose(g, g_rows, rtol=1e-9, atol=1e-9)
    h = 1e-6
    fd = [(ob.lmm(prob, theta + h * e, reml).deviance - ob.lmm(prob, theta - h * e, reml).deviance) / (2 * h)
          for e in np.eye(len(theta))]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)


def test_inverse_traces_and_blocks_from_column_pairs_equal_the_dense_inverse():
    """A sparse crossed pattern (InstEval's shape, scaled down): S's lower triangle built from
    the column pairs, the per-term traces of A^{-1} and its diagonal blocks gathered from S^{-1}
    at those pairs -- all equal to A^{-1} solved column by column with the same factor."""
    from glmmbayes.core import linalg as la

    rng = np.random.default_rng(7)
    n = 1500
    d = pd.DataFrame({"s": rng.integers(0, 600, n).astype(str), "t": rng.integers(0, 200, n).astype(str)})
    d["dept"] = (d["t"].astype(int) % 9).astype(str)
    d["y"] = rng.normal(size=n)
    s = gb.design(gb.Spec("y ~ 1 + (1 | s) + (1 | t) + (1 | dept)", family="gaussian"), d).structure
    w = rng.uniform(0.2, 3.0, n)
    f = la.factorize(s, s.zl_values(np.array([0.9, 0.4, 1.3])), w)
    assert s.cross_pattern().get("pairs") is not None  # the sparse route is the one under test
    Ainv = f.solve(np.eye(s.q))
    diag = np.diag(Ainv)
    np.testing.assert_allclose(la.inverse_block_traces(f), np.add.reduceat(diag, s.u_offsets[:-1]), rtol=1e-11)
    blocks = np.concatenate([b[:, 0, 0] for b in f.inverse_diag_blocks()])
    np.testing.assert_allclose(blocks, diag, rtol=1e-11)


@pytest.mark.parametrize("formula", ["y ~ 1 + (1 | s) + (1 | t) + (1 | dept)", "y ~ x + (1 | s) + (x | t)"])
def test_row_projections_of_a_scalar_head_from_selected_inverse_entries(formula):
    """A scalar head on a sparse crossed pattern (several nonzeros per column of L21, a vector
    tail term): the row projections from the selected entries of S^{-1} equal the rows of
    ZΛ A^{-1} at the columns each row touches, A^{-1} solved column by column."""
    from glmmbayes.core import linalg as la

    rng = np.random.default_rng(11)
    n = 1500
    d = pd.DataFrame({"s": rng.integers(0, 600, n).astype(str), "t": rng.integers(0, 200, n).astype(str),
                      "x": rng.normal(size=n), "y": rng.normal(size=n)})
    d["dept"] = (d["t"].astype(int) % 9).astype(str)
    s = gb.design(gb.Spec(formula, family="gaussian"), d).structure
    V = s.zl_values(rng.uniform(0.3, 1.2, s.ntheta))
    f = la.factorize(s, V, rng.uniform(0.2, 3.0, n))
    # the route under test: a blocked factor with a scalar head on a sparse pattern
    assert isinstance(f, la.Factor) and s.projection_index() is not None
    assert s.cross_pattern()["nnz21"] < 0.05 * s.q1 * s.q2
    Ph, Pt = la.row_projections(f, V)
    ZL = np.column_stack([s.zl_mult(V, e) for e in np.eye(s.q)])
    P = ZL @ f.solve(np.eye(s.q))  # row i: (A^{-1} x_i)'
    rows = np.arange(n)[:, None]
    np.testing.assert_allclose(Ph, P[rows, s._col_index[0]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Pt, P[rows, s.q1 + s._tail_indices.reshape(n, -1)], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (x | g)", "y ~ x + (1 | g/h)",
                                     "y ~ x + (1 | g) + (1 | c)", "y ~ x + (x | g) + (1 | c)",
                                     "y ~ 0 + (1 | g) + (1 | c)"])
def test_dense_factor_of_a_small_design_equals_the_blocked_one(formula):
    """Small designs factor A from the dense ZΛ in one piece: the same Cholesky factor as the
    blocked one (it is unique), so every product, solve, inverse block, projection and the
    blocks the quadratures read agree with the blocked factor of the same ZΛ."""
    from glmmbayes.core import linalg as la

    rng = np.random.default_rng(3)
    n = 80
    d = pd.DataFrame({"g": rng.integers(0, 9, n).astype(str), "c": rng.integers(0, 4, n).astype(str),
                      "x": rng.normal(size=n), "y": rng.normal(size=n)})
    d["h"] = rng.integers(0, 3, n).astype(str)
    s = gb.design(gb.Spec(formula, family="gaussian", REML=False), d).structure
    X = gb.design(gb.Spec(formula, family="gaussian", REML=False), d).X
    assert s.dense_zl
    theta = rng.uniform(0.4, 1.5, s.ntheta)
    V = s.zl_values(theta)
    blocked_V = la.ZLValues(list(V), V.lambdas, False)  # the same ZΛ without its dense copy
    w = rng.uniform(0.2, 2.0, n)
    w[:3] = -0.05  # observed information can be negative on some rows
    for XX in (None, X):
        fd, fb = la.factorize(s, V, w, XX), la.factorize(s, blocked_V, w, XX)
        assert isinstance(fd, la.DenseFactor) and isinstance(fb, la.Factor)
        np.testing.assert_allclose(fd.ldL2, fb.ldL2, rtol=1e-12)
        b = rng.standard_normal((s.q, 3))
        for op in ("forward", "backward", "solve"):
            np.testing.assert_allclose(getattr(fd, op)(b), getattr(fb, op)(b), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(getattr(fd, op)(b[:, 0]), getattr(fb, op)(b[:, 0]), rtol=1e-9, atol=1e-12)
        for bd, bb in zip(fd.inverse_diag_blocks(), fb.inverse_diag_blocks()):
            np.testing.assert_allclose(bd, bb, rtol=1e-9, atol=1e-12)
        for pd_, pb in zip(la.row_projections(fd, V), la.row_projections(fb, blocked_V)):
            if pb is None:
                assert pd_ is None
            else:
                np.testing.assert_allclose(pd_, pb, rtol=1e-9, atol=1e-12)
        tb = la.inverse_block_traces(fb)
        if tb is None:
            assert la.inverse_block_traces(fd) is None
        else:
            np.testing.assert_allclose(la.inverse_block_traces(fd), tb, rtol=1e-10)
        np.testing.assert_allclose(fd.L1inv, fb.L1inv, rtol=1e-10, atol=1e-12)
        if fb.L22 is None:
            assert fd.L22 is None
        else:
            np.testing.assert_allclose(fd.L22, fb.L22, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(fd.L21.toarray(), fb.L21.toarray(), rtol=1e-9, atol=1e-12)
            if fb.L21v is not None:
                np.testing.assert_allclose(fd.L21v, fb.L21v, rtol=1e-9, atol=1e-12)
        if XX is not None:
            np.testing.assert_allclose(fd.ldRX2, fb.ldRX2, rtol=1e-12)
            np.testing.assert_allclose(fd.LX, fb.LX, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(fd.RX, fb.RX, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(fd.rx_inverse(), fb.rx_inverse(), rtol=1e-9)
            bb = rng.standard_normal(X.shape[1])
            for a, c in zip(fd.solve_joint(b[:, 0], bb), fb.solve_joint(b[:, 0], bb)):
                np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
        r = rng.standard_normal(n)
        np.testing.assert_allclose(s.zl_tmult(V, r), s.zl_tmult(blocked_V, r), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(s.zl_mult(V, b[:, 0]), s.zl_mult(blocked_V, b[:, 0]), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(s.zl_mult_matrix(V, b), s.zl_mult_matrix(blocked_V, b), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(s.zl_tmult_matrix(V, X), s.zl_tmult_matrix(blocked_V, X), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("formula", ["y ~ x + (x + z | g)", "y ~ x + (1 | g)", "y ~ 0 + (1 | g)"])
def test_single_term_lmm_on_cross_products_equals_the_general_path(formula, reml):
    """The one-term LMM objective on per-level cross-products gives lme4's devfun and its
    θ-gradient as the general blocked path does (weights, REML, a large mean, no X)."""
    from glmmbayes.core.lmm_single import SingleTermLmm
    from glmmbayes.design import build_design

    rng = np.random.default_rng(1)
    d = pd.DataFrame({"g": rng.integers(0, 7, 90).astype(str), "x": rng.normal(size=90),
                      "z": rng.normal(size=90), "w": rng.uniform(0.5, 2, 90)})
    d["y"] = 1000 + d.x + rng.normal(size=90) + rng.normal(size=7)[d.g.astype(int)]
    D = build_design(gb.Spec(formula, weights="w", REML=reml), d)
    prob = D.problem()
    fast = SingleTermLmm(prob, reml)
    start = D.structure.theta_start()
    for theta in (start, 0.3 * start + 0.05, 2.0 * start - 0.1):
        sol = ob.lmm(prob, theta, reml)
        value, grad = fast.value_and_grad(theta)
        assert value == pytest.approx(sol.deviance, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(grad, ob.lmm_gradient(prob, sol, reml), rtol=1e-9, atol=1e-9)
        _assert_same_lmm_summary(fast.summary(theta), ob.lmm_summary(prob, theta, reml), 1e-12)


def _assert_same_lmm_summary(fast, general, rel_dev):
    """The solution a fit reports (β, u, σ², β's unscaled covariance, u's conditional
    covariances) from a fast LMM objective equals the general path's."""
    assert fast.deviance == pytest.approx(general.deviance, rel=rel_dev, abs=1e-9)
    assert fast.sigma2 == pytest.approx(general.sigma2, rel=1e-9)
    np.testing.assert_allclose(fast.beta, general.beta, rtol=1e-9, atol=1e-9)
    # the general path solves for u with the response's mean of 800 in the right-hand side:
    # against a solve refined in long double its u is off by up to 1.6e-9 on 4,000 rows, the
    # cross-product path's (the mean taken out first) by 1e-12
    np.testing.assert_allclose(fast.u, general.u, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fast.rx_inverse, general.rx_inverse, rtol=1e-9, atol=1e-15)
    assert len(fast.u_condvar) == len(general.u_condvar)
    for a, b in zip(fast.u_condvar, general.u_condvar):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("formula", ["y ~ x + (1 | a) + (1 | b) + (1 | c)", "y ~ x + (1 | b/a)",
                                     "y ~ 0 + (1 | a) + (0 + x | b)"])
def test_scalar_terms_lmm_on_cross_products_equals_the_general_path(formula, reml):
    """Crossed and nested scalar terms: the LMM objective on the Gram blocks of Z'WZ gives the
    deviance and θ-gradient of the general path (weights, REML, a large mean, a scalar slope)."""
    from glmmbayes.core.lmm_scalar_terms import ScalarTermsLmm
    from glmmbayes.design import build_design

    rng = np.random.default_rng(2)
    n = 300
    d = pd.DataFrame({"a": rng.integers(0, 30, n).astype(str), "b": rng.integers(0, 8, n).astype(str),
                      "c": rng.integers(0, 4, n).astype(str), "x": rng.normal(size=n),
                      "w": rng.uniform(0.5, 2, n)})
    d["y"] = 500 + d.x + rng.normal(size=n) + rng.normal(size=30)[d.a.astype(int)] + rng.normal(size=8)[d.b.astype(int)]
    D = build_design(gb.Spec(formula, weights="w", REML=reml), d)
    prob = D.problem()

    def general(theta):
        sol = ob.lmm(prob, theta, reml)
        return sol.deviance, ob.lmm_gradient(prob, sol, reml)

    fast = ScalarTermsLmm(prob, reml, fallback=general)
    for theta in (np.ones(D.structure.ntheta), np.array([0.3, 1.7, 0.6])[: D.structure.ntheta]):
        value, grad = fast.value_and_grad(theta)
        v0, g0 = general(theta)
        assert value == pytest.approx(v0, rel=1e-12, abs=1e-9)
        assert fast.deviance(theta) == pytest.approx(v0, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(grad, g0, rtol=1e-9, atol=1e-9)
    # a θ_t at 0: the inverse-diagonal gradient does not apply, the general one is used
    theta0 = np.ones(D.structure.ntheta)
    theta0[-1] = 0.0
    np.testing.assert_allclose(fast.value_and_grad(theta0)[1], general(theta0)[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("rows, gram, lam", [(120, "dense", "dense"), (120, "dense", "rows"), (4000, "dense", "dense"),
                                             (4000, "sparse", "rows")])
@pytest.mark.parametrize("formula", ["y ~ x + (1 | a) + (1 | b)", "y ~ x + (1 | b/a)",
                                     "y ~ x + (x | b) + (1 | a)", "y ~ 0 + (x | b) + (x + z || c)"])
def test_dense_lmm_on_one_gram_matrix_equals_the_general_path(formula, rows, gram, lam, reml, monkeypatch):
    """The small-q LMM objective on the dense Gram matrix of [Z, X, r] gives the general path's
    deviance and θ-gradient for crossed, nested and vector terms (the Gram matrix by a dense
    product or from the sparse Z'; Λ̃'GΛ̃ with a dense Λ̃ or by Λ' on G's rows), with weights, a
    large mean, no X, REML, and a θ at 0 (Λ singular)."""
    from glmmbayes.core import lmm_dense
    from glmmbayes.core.lmm_dense import DENSE_LMM_MAX_Q, DenseLmm
    from glmmbayes.design import build_design

    if gram == "sparse":
        monkeypatch.setattr(lmm_dense, "_DENSE_GRAM_MAX_WORK", 0)
    monkeypatch.setattr(lmm_dense, "_DENSE_LAMBDA_MAX", 10**6 if lam == "dense" else 0)

    rng = np.random.default_rng(3)
    d = pd.DataFrame({"a": rng.integers(0, 12, rows).astype(str), "b": rng.integers(0, 5, rows).astype(str),
                      "c": rng.integers(0, 3, rows).astype(str), "x": rng.normal(size=rows),
                      "z": rng.normal(size=rows), "w": rng.uniform(0.5, 2, rows)})
    d["y"] = 800 + d.x + rng.normal(size=rows) + rng.normal(size=12)[d.a.astype(int)] + rng.normal(size=5)[d.b.astype(int)]
    D = build_design(gb.Spec(formula, weights="w", REML=reml), d)
    prob, s = D.problem(), D.structure
    assert s.q <= DENSE_LMM_MAX_Q
    fast = DenseLmm(prob, reml)
    start = s.theta_start()
    zero = start.copy()
    zero[-1] = 0.0
    for theta in (start, 0.4 * start + 0.15 * (s.theta_lower < 0), 1.8 * start - 0.2 * (s.theta_lower < 0), zero):
        sol = ob.lmm(prob, theta, reml)
        value, grad = fast.value_and_grad(theta)
        # pwrss is rr less the solved part: without X to take out the mean of 800 it is 2,600
        # times below rr, whose 4,000-row sums round at about 1e-14
        rel = 1e-11 if D.p == 0 and rows > 1000 else 1e-12
        assert value == pytest.approx(sol.deviance, rel=rel, abs=1e-9)
        assert fast.deviance(theta) == pytest.approx(sol.deviance, rel=rel, abs=1e-9)
        np.testing.assert_allclose(grad, ob.lmm_gradient(prob, sol, reml), rtol=1e-9, atol=1e-8)
        _assert_same_lmm_summary(fast.summary(theta), ob.lmm_summary(prob, theta, reml), rel)


@pytest.mark.parametrize("reml", [False, True])
def test_scalar_terms_lmm_on_a_sparse_crossed_pattern_builds_s_from_fixed_pairs(reml):
    """InstEval's shape, scaled down: S's lower triangle and the head's trace terms from one
    θ-free sparse product (`linalg.FixedPairs`) give the general path's deviance and gradient,
    and the factor equals the one built from the column pairs."""
    from glmmbayes.core import linalg as la
    from glmmbayes.core.lmm_scalar_terms import ScalarTermsLmm
    from glmmbayes.design import build_design

    rng = np.random.default_rng(7)
    n = 1500
    d = pd.DataFrame({"s": rng.integers(0, 600, n).astype(str), "t": rng.integers(0, 200, n).astype(str),
                      "x": rng.normal(size=n), "w": rng.uniform(0.2, 3.0, n)})
    d["dept"] = (d["t"].astype(int) % 9).astype(str)
    d["y"] = d.x + rng.normal(size=600)[d.s.astype(int)] + rng.normal(size=200)[d.t.astype(int)] + rng.normal(size=n)
    D = build_design(gb.Spec("y ~ x + (1 | s) + (1 | t) + (1 | dept)", weights="w", REML=reml), d)
    prob = D.problem()

    def general(theta):
        sol = ob.lmm(prob, theta, reml)
        return sol.deviance, ob.lmm_gradient(prob, sol, reml)

    fast = ScalarTermsLmm(prob, reml, fallback=general)
    assert fast.pairs is not None  # the route under test
    theta = np.array([0.9, 0.4, 1.3])
    value, grad = fast.value_and_grad(theta)
    v0, g0 = general(theta)
    assert value == pytest.approx(v0, rel=1e-12)
    np.testing.assert_allclose(grad, g0, rtol=1e-9, atol=1e-9)
    s = D.structure
    f_fixed = fast._solve(theta)[1][0]
    f_pairs = la.factorize(s, s.zl_values(theta), prob.wt)
    np.testing.assert_allclose(np.tril(f_fixed.L22), f_pairs.L22, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(la.inverse_block_traces(f_fixed), la.inverse_block_traces(f_pairs), rtol=1e-11)


def test_large_cholesky_gets_the_cores_inside_a_single_threaded_fit_but_not_inside_a_worker():
    """A fit runs BLAS on one thread; one factorization or inverse of order >= THREADED_LAPACK
    gets BLAS's own threads back, except where the cores belong to the workers."""
    from threadpoolctl import threadpool_info

    from glmmbayes.core import linalg as la
    from glmmbayes.core import threads

    def blas_threads():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    native = threads._native_threads()
    with threads.single_threaded_blas():
        assert blas_threads() == 1
        with threads.lapack_threads(threads.THREADED_LAPACK - 1):
            assert blas_threads() == 1
        with threads.lapack_threads(threads.THREADED_LAPACK):
            assert blas_threads() == native
        assert blas_threads() == 1
    with threads.single_threaded_blas(lapack_cores=False), threads.single_threaded_blas():
        with threads.lapack_threads(threads.THREADED_LAPACK):
            assert blas_threads() == 1  # a fit inside a worker keeps its one thread
    before = blas_threads()
    with threads.lapack_threads(10 * threads.THREADED_LAPACK):  # no fit context: nothing changes
        assert blas_threads() == before
    # the factor is the same either way
    rng = np.random.default_rng(1)
    n = threads.THREADED_LAPACK + 10
    A = rng.standard_normal((n, n))
    S = A @ A.T + n * np.eye(n)
    with threads.single_threaded_blas():
        L = la.cholesky_lower(S.copy())
        Sinv = la.cho_inverse_lower(L)
    np.testing.assert_allclose(L @ L.T, S, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(Sinv, np.tril(np.linalg.inv(S)), rtol=1e-9, atol=1e-12)
