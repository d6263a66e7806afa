"""The `ops` namespaces: every formula of the family table is written once against these, so
the same code gives the numpy value used by PIRLS, Laplace, AGQ and PQL, and the PyTensor graph
used by the PyMC model (every method fits exactly the same likelihood)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from scipy import special


def _np_log_ndtr(x):
    return special.log_ndtr(x)


# below this many values scipy's single ufunc call is the faster; above it numpy's vectorized
# exp and log1p (1e6 values: log(expit) 4.6 against scipy's 18 ms, log(1 + e^x) 4.6 against
# logaddexp's 22 ms, expit 3.2 against 4.1 ms; 5,000 values: 13 against 60 µs, 7 against 20 µs)
_SHORT = 64


def _np_expit(x):
    x = np.asarray(x)
    if x.size < _SHORT:
        return special.expit(x)
    with np.errstate(over="ignore"):  # e^-x = inf far left: 1 / inf = 0, the limit
        return 1.0 / (1.0 + np.exp(-x))


def _np_log_expit(x):
    """log(1 / (1 + e^-x)) = min(x, 0) - log(1 + e^-|x|), stable in both tails."""
    x = np.asarray(x)
    if x.size < _SHORT:
        return special.log_expit(x)
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def _np_log1pexp(x):
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) (faster than logaddexp at every length)."""
    x = np.asarray(x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


# summing terms over j < y costs about 20 ns a term, a gammaln or polygamma 0.1-1 µs a row: the
# sums are taken up to a mean count of 32 (and 4e6 terms in all)
_COUNT_TERMS_MAX = 4_000_000
_COUNT_TERMS_MEAN = 32.0


def count_terms(y, k):
    """For integer counts y >= 0 broadcast against k: (row of each term, k + j of each term
    for j = 0, ..., y - 1, the number of rows, the broadcast shape), so that a function of
    Σ_{j<y} g(k + j) is one flat pass and one bincount; None where the counts are not integers
    or the terms too many."""
    yb, kb = np.broadcast_arrays(np.asarray(y, float), np.asarray(k, float))
    counts = yb.ravel()
    total = float(np.sum(counts)) if counts.size else 0.0
    if not (total <= min(_COUNT_TERMS_MAX, _COUNT_TERMS_MEAN * counts.size)
            and np.all(counts >= 0) and np.all(counts == np.floor(counts))):
        return None
    yi = counts.astype(np.int64)
    row = np.repeat(np.arange(yi.size), yi)
    j = np.arange(row.size) - np.repeat(np.cumsum(yi) - yi, yi)  # 0, 1, ..., y_i - 1 per row
    return row, kb.ravel()[row] + j, yi.size, kb.shape


def _np_lgamma_ratio(y, k):
    """log Γ(y + k) - log Γ(k). For integer counts the finite sum Σ_{j<y} log(k + j): it keeps
    its digits where k is huge (the Poisson limit of the negative binomials: k = 1e14 leaves
    the difference of two gammaln of 3e15 wrong by 0.3)."""
    terms = count_terms(y, k)
    if terms is None:
        return special.gammaln(y + k) - special.gammaln(k)
    row, kj, size, shape = terms
    return np.bincount(row, np.log(kj), size).reshape(shape)


NUMPY = SimpleNamespace(
    name="numpy",
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    expm1=np.expm1,
    sqrt=np.sqrt,
    expit=_np_expit,
    log_expit=_np_log_expit,
    ndtr=special.ndtr,
    log_ndtr=_np_log_ndtr,
    gammaln=special.gammaln,
    lgamma_ratio=_np_lgamma_ratio,
    log1pexp=_np_log1pexp,
    clip=np.clip,
    where=np.where,
    logaddexp=np.logaddexp,
)


def pytensor_ops():
    """The same namespace over PyTensor tensors (imported lazily: pymc is needed only for hmc)."""
    import pytensor.tensor as pt

    def ndtr(x):
        return 0.5 * pt.erfc(-x / math.sqrt(2.0))

    def log_ndtr(x):
        # pt.log(ndtr) underflows far in the left tail; erfcx keeps it finite
        return pt.switch(
            x < -5.0,
            pt.log(0.5 * pt.erfcx(-x / math.sqrt(2.0))) - 0.5 * x * x,
            pt.log(ndtr(x)),
        )

    def f64(fn):
        # PyTensor makes a Python float that is exact in float32 (2.5) a float32 constant, and
        # evaluates the function in single precision; numpy float64 keeps double precision
        def wrapped(*args):
            return fn(*(np.float64(a) if isinstance(a, (int, float)) else a for a in args))

        return wrapped

    return SimpleNamespace(
        name="pytensor",
        exp=f64(pt.exp),
        log=f64(pt.log),
        log1p=f64(pt.log1p),
        expm1=f64(pt.expm1),
        sqrt=f64(pt.sqrt),
        expit=pt.sigmoid,
        log_expit=lambda x: -pt.softplus(-x),
        ndtr=ndtr,
        log_ndtr=log_ndtr,
        gammaln=f64(pt.gammaln),
        lgamma_ratio=f64(lambda y, k: pt.gammaln(y + k) - pt.gammaln(k)),
        # pt.logaddexp is log(exp(a) + exp(b)) as written: softplus keeps log(1 + e^x) and its
        # gradient exact in both tails
        log1pexp=pt.softplus,
        clip=pt.clip,
        where=pt.switch,
        logaddexp=f64(pt.logaddexp),
    )
