"""Run independent chunks of replicates serially, in local processes or on a Dask cluster.

The work is a function `fn(payload, task) -> result` and a list of tasks; the payload (the study
or the fit being bootstrapped) is cloudpickled once, so functions defined in a notebook or a
script travel too. Results come back to this process, which hands each to `on_result` as it
arrives (the caller writes it to its store), so an interrupted run loses only the chunks in
flight. Every replicate's seed is fixed by the caller, never by the worker, so the results do not
depend on where or in which order the chunks run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import cloudpickle

from ..progress import progress_bar

# per-process cache of unpickled payloads, by digest (a worker keeps the study between chunks)
_PAYLOADS: dict[bytes, Any] = {}


def _payload(blob: bytes):
    key = hashlib.sha1(blob).digest()
    if key not in _PAYLOADS:
        _PAYLOADS.clear()
        _PAYLOADS[key] = cloudpickle.loads(blob)
    return _PAYLOADS[key]


def _call(fn: Callable, blob: bytes, task):
    from ..core.threads import single_threaded_blas

    with single_threaded_blas(lapack_cores=False):  # one BLAS thread per worker: the cores are the workers'
        return fn(_payload(blob), task)


_POOL_BLOB: bytes | None = None


def _pool_init(blob: bytes) -> None:
    global _POOL_BLOB
    _POOL_BLOB = blob


def _pool_call(fn, task):
    return _call(fn, _POOL_BLOB, task)


@dataclass
class RunLog:
    """What happened to the chunks of one run: how many finished, and the chunks lost to an
    error outside the replicates (a killed worker, a lost machine), with the error."""

    done: int = 0
    lost: list[tuple[Any, str]] = field(default_factory=list)
    stopped: bool = False


def run_tasks(fn: Callable, payload: Any, tasks: Sequence, on_result: Callable[[Any, Any], int], *,
              client=None, processes: int | None = None, progress: bool = True, total: int | None = None,
              initial: int = 0, desc: str = "replicates", max_tasks: int | None = None) -> RunLog:
    """Run `fn(payload, task)` for every task and call `on_result(task, result)` (which returns the
    number of replicates done) as each finishes.

    client: a dask.distributed Client (the tasks run on its workers); otherwise `processes` local
    processes (None: all CPUs; 1: in this process). max_tasks: stop after that many tasks have
    finished (a time-boxed run; the rest are left for the next run).
    """
    log = RunLog()
    tasks = list(tasks)
    if max_tasks is not None:
        if int(max_tasks) < 0:
            raise ValueError(f"max_chunks must be >= 0, got {max_tasks}")
        log.stopped = int(max_tasks) < len(tasks)
    limit = len(tasks) if max_tasks is None else min(len(tasks), int(max_tasks))
    blob = cloudpickle.dumps(payload)
    bar = progress_bar(total=total if total is not None else len(tasks), initial=initial, desc=desc,
                       unit="rep", disable=not progress, smoothing=0.05, leave=True)

    def finished(task, result):
        bar.update(on_result(task, result))
        log.done += 1

    def lost(task, exc):
        log.lost.append((task, f"{type(exc).__name__}: {exc}"))
        warnings.warn(f"chunk {task} lost ({type(exc).__name__}: {exc}); run again to redo it",
                      RuntimeWarning, stacklevel=3)

    try:
        if client is not None:
            _run_dask(client, fn, blob, tasks, limit, finished, lost)
        elif (processes or os.cpu_count() or 1) <= 1 or limit <= 1:
            for task in tasks[:limit]:
                try:
                    result = _call(fn, blob, task)
                except Exception as e:  # noqa: BLE001 -- a chunk failing outside its replicates
                    lost(task, e)
                    continue
                finished(task, result)
        else:
            _run_pool(processes or os.cpu_count() or 1, fn, blob, tasks, limit, finished, lost)
    finally:
        bar.close()
    return log


def _run_pool(processes, fn, blob, tasks, limit, finished, lost):
    ex = ProcessPoolExecutor(max_workers=min(processes, limit), initializer=_pool_init, initargs=(blob,))
    futs = {}
    try:
        futs = {ex.submit(_pool_call, fn, t): t for t in tasks}
        n = 0
        for f in as_completed(futs):
            if f.cancelled():
                continue
            exc = f.exception()
            if exc is not None:
                lost(futs[f], exc)
            else:
                finished(futs[f], f.result())
            n += 1
            if n >= limit:
                break
    finally:
        for f in futs:
            f.cancel()
        ex.shutdown(wait=True, cancel_futures=True)


def _run_dask(client, fn, blob, tasks, limit, finished, lost):
    from distributed import as_completed as dask_completed

    # a key of its own per run: with a content hash, a later run of the same study reuses the key
    # while the release of the previous run's copy is still under way, and its tasks lose their input
    remote = client.scatter(blob, broadcast=True, hash=False)
    futs = {client.submit(_call, fn, remote, t, pure=False): t for t in tasks}
    n = 0
    try:
        for f in dask_completed(list(futs)):
            if f.status == "error":
                lost(futs[f], f.exception())
            elif f.status == "finished":
                finished(futs[f], f.result())
            else:  # cancelled by the cluster (a lost worker or input): the chunk is not done
                lost(futs[f], RuntimeError(f"the task was {f.status} on the cluster"))
            n += 1
            if n >= limit:
                break
    finally:
        client.cancel([f for f in futs if not f.done()])
