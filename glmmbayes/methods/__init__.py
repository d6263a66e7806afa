"""The method table: every estimation method by name, with its declared options.

A method is a function ``design (+ options) -> Estimate`` in a module of its own. The table
says which function runs for a design (the gaussian/identity LMM is exact and runs
`methods.lmm` for "laplace" and "agq"; lme4's ``nAGQ > 1`` under "laplace" is AGQ), checks the
options once, and names the estimate a method needs from another one first (joint: θ from PQL
or Laplace; hmc: the ML start) -- so methods never call each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

from ..design import Design
from ..errors import SpecError
from . import agq, hmc, joint, laplace, lmm, pql
from .options import Option, check_options


@dataclass(frozen=True)
class Method:
    """One row of the table.

    prerequisite: (design, checked options) -> (method, options, required) | None: an estimate
        to compute first and pass to `run` as ``source`` (a Fit); when it fails and is not
        required, ``source`` is None.
    own_threads: the method runs threads or processes of its own (leave BLAS alone).
    """

    name: str
    run: Callable
    options: tuple[Option, ...]
    title: str
    prerequisite: Callable | None = None
    own_threads: bool = False


def _joint_source(design: Design, opts: Mapping[str, Any]):
    if design.spec.re_dist is not None:
        return joint.nonnormal_source(design, opts)
    src = joint.source_method(design, opts)
    return None if src is None else (*src, True)


def _hmc_start(design: Design, opts: Mapping[str, Any]):
    return ("agq" if design.spec.re_dist is not None else "laplace"), {}, False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("laplace", laplace.run, laplace.OPTIONS, "Maximum likelihood (Laplace approximation)"),
        Method("agq", agq.run, agq.OPTIONS, "Maximum likelihood (adaptive Gauss-Hermite quadrature)"),
        Method("pql", pql.run, pql.OPTIONS, "Penalized quasi-likelihood"),
        Method("joint", joint.run, joint.OPTIONS, "Joint maximization (h-likelihood mode)",
               prerequisite=_joint_source),
        Method("hmc", hmc.run, hmc.OPTIONS, "Bayesian posterior by NUTS", prerequisite=_hmc_start,
               own_threads=True),
    )
}

# option name -> the methods that declare it (to say where a misplaced option belongs)
OWNERS: dict[str, list[str]] = {}
for _m in METHODS.values():
    for _o in _m.options:
        OWNERS.setdefault(_o.name, []).append(_m.name)

_NONNORMAL_REFUSED = {
    "laplace": "the Laplace approximation assumes normal random effects (its Gaussian "
               "approximation is centred on a normal prior); for this model method='agq' computes the "
               "exact maximum likelihood by per-group quadrature",
    "pql": "PQL's working model is a linear mixed model with normal random effects; use "
           "method='agq' (exact ML), 'joint' or 'hmc' for this model",
}


def get(name: str) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise SpecError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


def checked_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a call to method `name`, checked against its declaration (once)."""
    return check_options(name, get(name).options, options, OWNERS)


def route(name: str, design: Design, opts: Mapping[str, Any]) -> Callable:
    """The function that computes method `name` for `design`, with the options bound."""
    if design.spec.re_dist is not None and name in _NONNORMAL_REFUSED:
        raise SpecError(f"method={name!r} cannot fit non-normal random effects "
                        f"({design.spec.re_dist}): {_NONNORMAL_REFUSED[name]}")
    if name in ("laplace", "agq") and design.family.is_lmm and design.spec.re_dist is None:
        return partial(lmm.run, label=name, nAGQ=opts["nAGQ"])
    # an explicit REML=True only: under the default (None) these fit the likelihood itself
    if design.spec.REML and (name in ("agq", "hmc") or (name == "laplace" and opts["nAGQ"] > 1)):
        raise SpecError(f"REML for a GLMM is the Laplace approximation with the fixed effects integrated "
                        f"out (method='laplace', nAGQ=1; or 'pql' with a REML working model); "
                        f"method={name!r}{' with nAGQ > 1' if name == 'laplace' else ''} has no REML variant")
    if name == "laplace" and opts["nAGQ"] > 1:
        return partial(agq.run, nAGQ=opts["nAGQ"])
    return partial(get(name).run, **opts)


def deviance_objective(name: str, design: Design, opts: Mapping[str, Any]):
    """The (θ, β[, φ]) deviance that method `name` optimized, with its options (for profiles);
    None for the linear mixed model, whose deviance is exact and profiled in closed form."""
    if design.family.is_lmm and design.spec.re_dist is None and name in ("laplace", "agq"):
        return None
    if name == "laplace" and opts.get("nAGQ", 1) > 1:
        return agq.deviance_objective(design, nAGQ=opts["nAGQ"])
    if name == "laplace":
        return laplace.deviance_objective(design, **opts)
    if name == "agq":
        return agq.deviance_objective(design, **opts)
    raise SpecError(f"method={name!r} does not maximize a likelihood: there is no deviance to profile")


__all__ = ["METHODS", "deviance_objective", "Method", "Option", "get", "checked_options", "route"]
