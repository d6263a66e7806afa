"""Gauss–Hermite rules relative to the standard normal kernel, product grids and Smolyak sparse grids.

Every rule integrates against φ_d(z) = (2π)^{-d/2} exp(-‖z‖²/2):

    ∫ t(z) φ_d(z) dz ≈ Σ_i w_i t(z_i),     Σ_i w_i = 1.

- `gauss_hermite(k)`: lme4's `GHrule(k)` (k knots, exact for polynomials of degree 2k - 1).
- `product_rule(k, d)`: the tensor product, k^d knots, exact for degree 2k - 1 in each coordinate.
- `smolyak_rule(k, d)`: Heiss & Winschel's (2008) sparse grid built from the non-nested
  Gauss–Hermite rules (their "GQN"; the SparseGrid package that lme4's GHrule comes from), exact
  for every polynomial of *total* degree 2k - 1 with far fewer knots than k^d for d >= 3. Some of
  its weights are negative.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Rule:
    """Knots z (K, d) and weights w (K,) against the standard normal kernel."""

    z: np.ndarray
    w: np.ndarray
    kind: str  # "gauss-hermite", "product" or "sparse"
    order: int  # k: the one-dimensional order / accuracy level

    @property
    def size(self) -> int:
        return int(self.w.shape[0])

    @property
    def dim(self) -> int:
        return int(self.z.shape[1])

    @property
    def has_negative_weights(self) -> bool:
        return bool(np.any(self.w < 0))


@lru_cache(maxsize=None)
def _gh(k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < 1:
        raise ValueError(f"Gauss-Hermite order must be >= 1, got {k}")
    if k == 1:
        return np.zeros(1), np.ones(1)
    z, w = hermegauss(k)  # weight exp(-z²/2)
    w = w / _SQRT_2PI
    z = 0.5 * (z - z[::-1])  # exact symmetry (the middle knot of an odd rule is exactly 0)
    w = 0.5 * (w + w[::-1])
    w = w / w.sum()
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def gauss_hermite(k: int) -> Rule:
    """k-point Gauss–Hermite rule for the standard normal density (lme4's GHrule(k))."""
    z, w = _gh(int(k))
    return Rule(z[:, None].copy(), w.copy(), "gauss-hermite", int(k))


@lru_cache(maxsize=None)
def _product(k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    z1, w1 = _gh(k)
    grids = np.meshgrid(*([z1] * d), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=1)
    wg = np.meshgrid(*([w1] * d), indexing="ij")
    w = np.prod(np.stack([g.ravel() for g in wg], axis=1), axis=1)
    return z, w


def product_rule(k: int, d: int) -> Rule:
    """Tensor-product Gauss–Hermite grid: k^d knots."""
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    if d == 1:
        r = gauss_hermite(k)
        return Rule(r.z, r.w, "product", int(k))
    z, w = _product(int(k), int(d))
    return Rule(z.copy(), w.copy(), "product", int(k))


def _compositions(total: int, d: int):
    """All l in N^d with l_i >= 1 and sum(l) == total."""
    for cuts in itertools.combinations(range(1, total), d - 1):
        bounds = (0,) + cuts + (total,)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(d))


@lru_cache(maxsize=None)
def _smolyak(k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    acc: dict[tuple, float] = {}
    for q in range(max(0, k - d), k):
        coef = (-1) ** (k - 1 - q) * math.comb(d - 1, k - 1 - q)
        for levels in _compositions(d + q, d):
            zs = [_gh(l)[0] for l in levels]
            ws = [_gh(l)[1] for l in levels]
            for idx in itertools.product(*[range(len(zz)) for zz in zs]):
                pt = tuple(round(float(zs[a][i]), 13) + 0.0 for a, i in enumerate(idx))
                wt = coef * math.prod(float(ws[a][i]) for a, i in enumerate(idx))
                acc[pt] = acc.get(pt, 0.0) + wt
    pts = [p for p, v in acc.items() if abs(v) > 1e-300]
    z = np.array(pts, dtype=float).reshape(-1, d)
    w = np.array([acc[p] for p in pts], dtype=float)
    order = np.lexsort(z.T[::-1])
    return z[order], w[order]


def smolyak_rule(k: int, d: int) -> Rule:
    """Smolyak sparse grid of accuracy level k in d dimensions (exact for total degree 2k - 1)."""
    if k < 1 or d < 1:
        raise ValueError(f"sparse grid needs level >= 1 and dimension >= 1, got k={k}, d={d}")
    if d == 1:
        r = gauss_hermite(k)
        return Rule(r.z, r.w, "sparse", int(k))
    z, w = _smolyak(int(k), int(d))
    return Rule(z.copy(), w.copy(), "sparse", int(k))


def default_grid(k: int, d: int) -> str:
    """"product" for d <= 2; for d >= 3 whichever grid has fewer knots (product on ties).

    The sparse grid is built from non-nested Gauss–Hermite rules, so it only saves knots once
    d or k is large enough (d = 3: k <= 3; d = 4: k <= 6; d = 5: k <= 9 ...); where it does not,
    the product grid is both smaller and exact for a larger polynomial space.
    """
    if d <= 2:
        return "product"
    return "sparse" if _smolyak(int(k), int(d))[1].shape[0] < k**d else "product"


def make_rule(k: int, d: int, grid: str | None = None) -> Rule:
    """The AGQ rule for a d-dimensional random effect: "product", "sparse", or None for
    `default_grid(k, d)`."""
    if grid is None:
        grid = default_grid(k, d)
    if grid == "product":
        return product_rule(k, d)
    if grid == "sparse":
        return smolyak_rule(k, d)
    raise ValueError(f"grid must be 'product' or 'sparse', got {grid!r}")


def normal_moment(a) -> float:
    """E[∏ z_i^{a_i}] for z ~ N(0, I): ∏ (a_i - 1)!! for even a_i, 0 if any a_i is odd."""
    out = 1.0
    for ai in np.atleast_1d(a):
        ai = int(ai)
        if ai % 2:
            return 0.0
        out *= float(np.prod(np.arange(ai - 1, 0, -2, dtype=float))) if ai > 0 else 1.0
    return out
