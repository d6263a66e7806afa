"""`fit(spec, data, method=...)`: compile one Spec to the chosen estimation method.

The pipeline, one way: Spec -> Design -> the method table (`glmmbayes.methods`) -> an Estimate
-> `build_fit` -> the Fit. A method that needs another method's estimate first (joint: θ from
PQL; hmc: the ML start) gets it from here, through the same table.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Any, Mapping

import pandas as pd

from . import methods
from .build import build_fit
from .core.threads import single_threaded_blas
from .design import Design, build_design
from .errors import ConvergenceWarning, GlmmError, LaplaceAdequacyWarning
from .fit import Fit, FitCall
from .spec import Spec, as_spec

SPEC_KEYWORDS = ("family", "link", "weights", "offset", "na_action", "REML", "known_dispersion", "re_dist")


def fit(spec: Spec | str, data: pd.DataFrame, method: str = "laplace", nAGQ: int | None = None, **options) -> Fit:
    """Fit a GLMM; returns an immutable `Fit`.

    spec: a `Spec`, or a formula string with the Spec's fields as keywords (``family``,
    ``link``, ``weights``, ``offset``, ``na_action``, ``REML``, ``known_dispersion``,
    ``re_dist``).  As in R, a formula without ``family`` is gaussian, and the gaussian/identity
    LMM is fitted by REML unless ``REML=False``.
    method: "laplace" (nAGQ=1 Laplace, nAGQ=0 lme4's fast criterion, nAGQ>1 AGQ), "agq"
    (nAGQ quadrature points per dimension, default 25; the exact ML for a non-normal random
    effect), "pql", "joint" or "hmc". Options are the method's (see `glmmbayes.methods`).
    Convergence problems are reported in `fit.messages` (and warned once).
    """
    spec_kw = {k: options.pop(k) for k in SPEC_KEYWORDS if k in options}
    spec = as_spec(spec, **spec_kw)
    methods.get(method)
    if nAGQ is not None:
        options["nAGQ"] = nAGQ
    opts = methods.checked_options(method, options)  # before the design: a typo fails fast
    result = run_method(build_design(spec, data), method, opts)
    _warn(result)
    return result


def _warn(result: Fit) -> None:
    """One warning for a failed fit (all its messages); otherwise one per remark, the Laplace
    adequacy check under its own category so that it can be filtered on its own."""
    if not result.converged:
        warnings.warn("; ".join(result.messages) or "fit did not converge", ConvergenceWarning, stacklevel=3)
        return
    check = getattr(result.details, "adequacy", None)
    note = None if check is None or check.adequate else result.messages[-1]
    for m in result.messages:
        warnings.warn(m, LaplaceAdequacyWarning if m == note else ConvergenceWarning, stacklevel=3)


def run_method(design: Design, method: str, options: Mapping[str, Any] | None = None) -> Fit:
    """Run one method of the table on a design (no warnings: the Fit carries its messages)."""
    opts = methods.checked_options(method, dict(options or {}))
    entry = methods.get(method)
    t0 = time.perf_counter()
    extra = {}
    if entry.prerequisite is not None:
        pre = entry.prerequisite(design, opts)
        if pre is not None:
            extra["source"] = _prerequisite(design, *pre)
    runner = methods.route(method, design, opts)
    if entry.own_threads:
        est = runner(design, **extra)
    else:
        with single_threaded_blas(design.structure.q2):
            est = runner(design, **extra)
    call = FitCall(method, opts, refit=partial(run_method, method=method, options=opts))
    return build_fit(design, est, time.perf_counter() - t0, call)


def _prerequisite(design: Design, method: str, options, required: bool) -> Fit | None:
    try:
        return run_method(design, method, options)
    except GlmmError:
        if required:
            raise
        return None


def design(spec: Spec | str, data: pd.DataFrame, **kw) -> Design:
    """Evaluate a spec on data without fitting (X, y, the random-effect terms)."""
    return build_design(as_spec(spec, **kw), data)
