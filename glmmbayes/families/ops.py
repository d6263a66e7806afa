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


NUMPY = SimpleNamespace(
    name="numpy",
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    expm1=np.expm1,
    sqrt=np.sqrt,
    expit=special.expit,
    log_expit=lambda x: -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x)))),
    ndtr=special.ndtr,
    log_ndtr=_np_log_ndtr,
    gammaln=special.gammaln,
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
        clip=pt.clip,
        where=pt.switch,
        logaddexp=f64(pt.logaddexp),
    )
