"""BLAS thread control for the fits.

The dense blocks of a fit are small: multithreaded BLAS only spins there and, on a busy machine,
can make each small Cholesky 100x slower, so the fits run with one BLAS thread. One controller
is made on first use (finding the loaded BLAS libraries takes milliseconds; limiting with a
known controller takes microseconds).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

from threadpoolctl import ThreadpoolController

_CONTROLLER: list[ThreadpoolController] = []


# dense blocks up to this size run fastest on one thread: crossed LMMs on 2 cores, one thread
# against two, q2 = 1142 (InstEval) 1.62 / 2.34 s, 1500 1.60 / 2.16 s, 2000 3.06 / 3.79 s,
# 2300 4.07 / 3.55 s, 2500 5.45 / 4.35 s (the factor's Cholesky and inverse are one LAPACK
# call each, but the triangular solves and products between them are too small to share)
SMALL_DENSE = 2_000


# one Cholesky factorization or inverse of this order or more gets the cores (up to
# _LAPACK_MAX_THREADS) inside a single-threaded fit. On 2 cores potrf + potri alone: order 400
# 1.9 -> 1.0 ms, 600 5.7 -> 4.2 ms, 1142 33.5 -> 22.5 ms (InstEval's REML fit 1.24-1.31 ->
# 1.10-1.17 s in paired runs); at 181 the alone-gain (306 -> 192 µs) did not show in the fit
# of grouseticks_nested, and one of three paired runs there was slower
THREADED_LAPACK = 400
_LAPACK_MAX_THREADS = 4
_LAPACK_CORES: ContextVar[int | None] = ContextVar("lapack_cores", default=None)  # None: no fit context
_NATIVE: list[int] = []


def _controller() -> ThreadpoolController:
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _native_threads() -> int:
    """BLAS's thread count when first asked (outside our limits; inside a caller's own limit it
    is that limit), at most the cap."""
    if not _NATIVE:
        counts = [i.get("num_threads", 1) for i in _controller().info() if i.get("user_api") == "blas"]
        _NATIVE.append(max(1, min(max(counts, default=1), _LAPACK_MAX_THREADS)))
    return _NATIVE[0]


def single_threaded_blas(dense_size: int = 0, lapack_cores: bool = True):
    """A context manager limiting BLAS to one thread -- unless the design's dense block is
    large (crossed terms with many levels), where the threads pay for themselves.

    lapack_cores: a large Cholesky factorization or inverse inside still gets BLAS's own
    threads (`lapack_threads`); False where the cores are taken (one fit per worker)."""
    if dense_size > SMALL_DENSE:
        return contextlib.nullcontext()
    return _single(lapack_cores)


@contextlib.contextmanager
def _single(lapack_cores: bool):
    controller = _controller()
    k, outer = (_native_threads() if lapack_cores else 1), _LAPACK_CORES.get()
    token = _LAPACK_CORES.set(k if outer is None else min(k, outer))  # a fit inside a worker keeps 1
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _LAPACK_CORES.reset(token)


def lapack_threads(order: int):
    """Inside `single_threaded_blas`: BLAS's threads for one factorization or inverse of a
    dense matrix of this order, where they pay for themselves; otherwise no change."""
    k = _LAPACK_CORES.get()
    if k is not None and k > 1 and order >= THREADED_LAPACK:
        return _controller().limit(limits=k, user_api="blas")
    return contextlib.nullcontext()
