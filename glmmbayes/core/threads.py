"""BLAS thread control for the fits.

The dense blocks of a fit are small: multithreaded BLAS only spins there and, on a busy machine,
can make each small Cholesky 100x slower, so the fits run with one BLAS thread. One controller
is made on first use (finding the loaded BLAS libraries takes milliseconds; limiting with a
known controller takes microseconds).
"""

from __future__ import annotations

from threadpoolctl import ThreadpoolController

_CONTROLLER: list[ThreadpoolController] = []


def single_threaded_blas():
    """A context manager limiting BLAS to one thread."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
