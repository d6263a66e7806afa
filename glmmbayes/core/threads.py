"""BLAS thread control for the fits.

The dense blocks of a fit are small: multithreaded BLAS only spins there and, on a busy machine,
can make each small Cholesky 100x slower, so the fits run with one BLAS thread. One controller
is made on first use (finding the loaded BLAS libraries takes milliseconds; limiting with a
known controller takes microseconds).
"""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController

_CONTROLLER: list[ThreadpoolController] = []


# dense blocks up to this size run fastest on one thread: crossed LMMs on 2 cores, one thread
# against two, q2 = 1142 (InstEval) 1.62 / 2.34 s, 1500 1.60 / 2.16 s, 2000 3.06 / 3.79 s,
# 2300 4.07 / 3.55 s, 2500 5.45 / 4.35 s (the factor's Cholesky and inverse are one LAPACK
# call each, but the triangular solves and products between them are too small to share)
SMALL_DENSE = 2_000


def single_threaded_blas(dense_size: int = 0):
    """A context manager limiting BLAS to one thread -- unless the design's dense block is
    large (crossed terms with many levels), where the threads pay for themselves."""
    if dense_size > SMALL_DENSE:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
