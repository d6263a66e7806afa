"""`fit(spec, data, method=...)`: compile one Spec to the chosen estimation method."""

from __future__ import annotations

import importlib
import inspect
import warnings

import pandas as pd

from .core.threads import single_threaded_blas
from .design import Design, build_design
from .errors import ConvergenceWarning, SpecError
from .fit import Fit
from .spec import Spec

METHODS = ("laplace", "agq", "pql", "joint", "hmc")


def _as_spec(spec, family=None, link=None, **kw) -> Spec:
    if isinstance(spec, Spec):
        given = {k: v for k, v in dict(kw, family=family, link=link).items() if v is not None}
        if given:
            raise SpecError(
                f"{', '.join(sorted(given))} belong{'s' if len(given) == 1 else ''} to the Spec: "
                f"pass them to Spec(...) (or give the formula as a string), not to fit()"
            )
        return spec
    if isinstance(spec, str):
        return Spec(spec, family=family or "binomial", link=link, **kw)
    raise SpecError(f"spec must be a glmmbayes.Spec or a formula string, got {type(spec).__name__}")


def fit(spec: Spec | str, data: pd.DataFrame, method: str = "laplace", nAGQ: int | None = None, **options) -> Fit:
    """Fit a GLMM.

    method: "laplace" (nAGQ=1 Laplace, nAGQ=0 lme4's fast criterion, nAGQ>1 AGQ), "agq"
    (nAGQ quadrature points per dimension, default 25), "pql",
    "joint" or "hmc". Options are passed to the method. Convergence problems are reported in
    `fit.messages` (and warned once).
    """
    spec_kw = {k: options.pop(k) for k in ("family", "link", "weights", "offset", "na_action", "REML") if k in options}
    spec = _as_spec(spec, **spec_kw)
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if nAGQ is not None and method not in ("laplace", "agq"):
        raise SpecError(f"nAGQ applies to method='laplace' or 'agq', not to method={method!r}")
    if nAGQ is None:
        nAGQ = 25 if method == "agq" else 1
    if not isinstance(nAGQ, int) or isinstance(nAGQ, bool) or nAGQ < 0:
        raise SpecError(f"nAGQ must be a non-negative integer, got {nAGQ!r}")
    if getattr(spec, "re_dist", None) is not None:
        raise SpecError(
            f"this Spec has non-normal random effects ({spec.re_dist}); the methods of fit() assume "
            "normal ones. Use glmmbayes.nonnormal.fit_ml (exact ML), glmmbayes.nonnormal.fit_joint "
            "or glmmbayes.to_pymc_nonnormal"
        )
    design = build_design(spec, data)
    module = importlib.import_module(f"glmmbayes.methods.{method}")
    if method in ("laplace", "agq"):
        options["nAGQ"] = nAGQ
    params = inspect.signature(module.fit).parameters
    allowed = [p for p, v in params.items() if p != "design" and v.kind != v.VAR_KEYWORD]
    takes_any = any(v.kind == v.VAR_KEYWORD for v in params.values())
    unknown = sorted(set(options) - set(allowed))
    if unknown and not takes_any:
        raise SpecError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
            f"method={method!r}; its options are: {', '.join(allowed) or '(none)'}"
        )
    if method == "hmc":
        result = module.fit(design, **options)
    else:
        with single_threaded_blas():
            result = module.fit(design, **options)
    bad = [m for m in result.messages if not m.startswith("boundary")]
    if bad or not result.converged:
        warnings.warn("; ".join(result.messages) or "fit did not converge", ConvergenceWarning, stacklevel=2)
    elif result.messages:
        warnings.warn(result.messages[0], ConvergenceWarning, stacklevel=2)
    return result


def design(spec: Spec | str, data: pd.DataFrame, **kw) -> Design:
    """Evaluate a spec on data without fitting (X, y, the random-effect terms)."""
    return build_design(_as_spec(spec, **kw), data)
