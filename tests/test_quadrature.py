"""Gauss–Hermite, product and Smolyak sparse rules (glmmbayes.core.quadrature)."""

import itertools
import math

import numpy as np
import pytest

from glmmbayes.core.quadrature import (
    default_grid,
    gauss_hermite,
    make_rule,
    normal_moment,
    product_rule,
    smolyak_rule,
)


def _moment(rule, a):
    return float(np.sum(rule.w * np.prod(rule.z ** np.asarray(a, float), axis=1)))


def _scale(rule, a):
    """Σ |w| |z^a|: the size of the terms whose cancellation gives the moment (rounding scale)."""
    return float(np.sum(np.abs(rule.w) * np.abs(np.prod(rule.z ** np.asarray(a, float), axis=1))))


def _exact(rule, a, rel=1e-9):
    return abs(_moment(rule, a) - normal_moment(a)) <= rel * max(1.0, _scale(rule, a))


def test_gauss_hermite_matches_lme4_GHrule5():
    # lme4::GHrule(5), printed in seed 003 §3
    r = gauss_hermite(5)
    np.testing.assert_allclose(r.z[:, 0], [-2.856970, -1.355626, 0.0, 1.355626, 2.856970], atol=1e-6)
    np.testing.assert_allclose(r.w, [0.01125741, 0.22207592, 0.53333333, 0.22207592, 0.01125741], atol=1e-8)
    assert r.z[2, 0] == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 13, 25, 40])
def test_gauss_hermite_exact_to_degree_2k_minus_1(k):
    r = gauss_hermite(k)
    assert r.w.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(r.w > 0)
    for a in range(2 * k):
        assert _exact(r, [a]), a
    # one degree beyond it is not exact: E z^{2k} minus the rule is ‖He_k‖² = k! exactly
    err = normal_moment([2 * k]) - _moment(r, [2 * k])
    assert abs(err - math.factorial(k)) <= 1e-9 * _scale(r, [2 * k])
    assert err > 0.5 * math.factorial(k)


def test_gauss_hermite_high_order_is_symmetric():
    r = gauss_hermite(100)
    np.testing.assert_array_equal(r.z[:, 0], -r.z[::-1, 0])
    np.testing.assert_array_equal(r.w, r.w[::-1])
    assert r.w.sum() == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("d,k", [(2, 1), (2, 4), (2, 7), (3, 3), (3, 5)])
def test_product_rule_exact_per_coordinate(d, k):
    r = product_rule(k, d)
    assert r.size == k**d
    for a in itertools.product(range(2 * k), repeat=d):  # each coordinate up to degree 2k - 1
        assert _exact(r, a), a


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_smolyak_exact_for_total_degree(d, k):
    r = smolyak_rule(k, d)
    assert r.w.sum() == pytest.approx(1.0, abs=1e-12)
    for a in itertools.product(range(2 * k), repeat=d):
        if sum(a) > 2 * k - 1:
            continue
        assert _exact(r, a), a
    if k == 1:
        assert r.size == 1 and np.all(r.z == 0) and r.w[0] == pytest.approx(1.0)


def test_smolyak_is_sparse_where_it_should_be():
    # knot counts: the sparse grid beats k^d once d is large enough
    assert smolyak_rule(3, 5).size < 3**5
    assert smolyak_rule(5, 6).size < 5**6
    assert smolyak_rule(4, 3).has_negative_weights
    # but it is not exact for mixed monomials of total degree 2k beyond the rule
    r = smolyak_rule(3, 3)
    bad = [a for a in itertools.product(range(7), repeat=3) if not _exact(r, a, rel=1e-8)]
    assert bad and min(sum(a) for a in bad) >= 6


def test_default_grid_choice():
    assert default_grid(25, 1) == "product"
    assert default_grid(25, 2) == "product"
    assert default_grid(3, 3) == "sparse"  # 25 < 27 knots
    assert default_grid(5, 3) == "product"  # the GQN sparse grid has 165 > 125 knots
    assert default_grid(5, 5) == "sparse"
    assert make_rule(5, 2).kind == "product" and make_rule(5, 2, "sparse").kind == "sparse"
    with pytest.raises(ValueError):
        make_rule(5, 2, "smolyak")
