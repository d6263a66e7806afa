"""Fits and comparisons as plain JSON-ready dicts (the command line's --json output)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .compare import Comparison, from_fits
from .fit import Fit


def _clean(x: Any) -> Any:
    """numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if x is pd.NA or x is pd.NaT:
        return None
    return str(x)


def fit_dict(fit: Fit) -> dict:
    """One fit: estimates, standard errors, variance components, likelihood and verdict."""
    vc = fit.varcorr.astype(object).where(fit.varcorr.notna(), None)
    return _clean({
        "method": fit.method,
        "estimate_kind": fit.estimate_kind,
        "converged": fit.converged,
        "messages": list(fit.messages),
        "fixef": fit.fixef.to_dict(),
        "se": fit.se.to_dict(),
        "varcorr": vc.to_dict(orient="records"),
        "theta": fit.theta.to_dict(),
        "dispersion": fit.dispersion,
        "logLik": fit.loglik,
        "AIC": fit.aic,
        "BIC": fit.bic,
        "npar": fit.npar,
        "nobs": fit.nobs,
        "seconds": fit.seconds,
    })


def result_dict(result: Fit | Comparison, extra: Mapping[str, Any] | None = None) -> dict:
    """A Fit or Comparison as a dict: model, data size and groups, one entry per method
    (`fit_dict`), the failed methods' errors, and any `extra` fields (command, version)."""
    c = result if isinstance(result, Comparison) else from_fits({result.method: result})
    sp = c.spec
    first = next(iter(c.fits.values()), None)
    out = {
        **dict(extra or {}),
        "model": {"formula": sp.formula, "family": sp.family_name, "link": sp.link_name, "REML": sp.reml,
                  "weights": sp.weights, "offset": sp.offset},
        "data": None if first is None else {"nobs": first.nobs, "ngrps": first.ngrps,
                                            "response": first.design.response_name,
                                            "omitted": first.design.n_omitted},
        "methods": {m: fit_dict(f) for m, f in c.fits.items()},
        "errors": dict(c.errors),
    }
    return _clean(out)


def write_json(result: Fit | Comparison, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result_dict(result, extra), indent=2) + "\n", encoding="utf-8")
    return path
