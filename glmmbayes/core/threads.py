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


SMALL_DENSE = 400  # dense blocks up to this size run fastest on one thread


def single_threaded_blas(dense_size: int = 0):
    """A context manager limiting BLAS to one thread -- unless the design's dense block is
    large (crossed terms with many levels), where the threads pay for themselves."""
    if dense_size > SMALL_DENSE:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
