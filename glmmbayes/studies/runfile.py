"""Run a study defined in a Python file or module (what ``glmmbayes study FILE`` calls)."""

from __future__ import annotations

import importlib
import os
import runpy

from ..errors import SpecError
from .engine import Study
from .result import StudyResult


def load_study(path_or_module: str) -> Study:
    """The `Study` defined by a Python file (``my_study.py``) or an importable module name
    (``mypkg.studies.first``): its variable ``study``, else the result of its function
    ``make_study()``, else its only `Study` object."""
    if os.path.exists(path_or_module):
        ns = runpy.run_path(str(path_or_module), run_name="__glmmbayes_study__")
    else:
        try:
            ns = vars(importlib.import_module(path_or_module))
        except ImportError as e:
            raise SpecError(f"study file or module {path_or_module!r} not found ({e})") from None
    if isinstance(ns.get("study"), Study):
        return ns["study"]
    if callable(ns.get("make_study")):
        s = ns["make_study"]()
        if isinstance(s, Study):
            return s
        raise SpecError(f"{path_or_module}: make_study() returned {type(s).__name__}, not a glmmbayes Study")
    found = [v for v in ns.values() if isinstance(v, Study)]
    if len(found) == 1:
        return found[0]
    raise SpecError(f"{path_or_module}: define `study = gb.Study(...)` (or a function make_study()); "
                    f"found {len(found)} Study objects")


def run_study_from_file(path_or_module: str, store: str | None = None, scheduler: str | None = None,
                        progress: bool = True, processes: int | None = None,
                        max_chunks: int | None = None) -> StudyResult:
    """Load the study of `path_or_module` (see `load_study`) and run it: on the Dask scheduler at
    `scheduler` (``tcp://host:8786``, started with ``dask scheduler``, workers with ``dask worker
    tcp://host:8786``) or in `processes` local processes; `store` keeps the finished chunks so
    that a second call resumes. Returns the `StudyResult`."""
    study = load_study(path_or_module)
    if scheduler is None:
        return study.run(store=store, processes=processes, progress=progress, max_chunks=max_chunks)
    from distributed import Client

    with Client(scheduler) as client:
        return study.run(store=store, client=client, progress=progress, max_chunks=max_chunks)
