"""`Fit.confint`: confidence intervals like lme4's confint.merMod -- Wald, profile or parametric
bootstrap -- with lme4's row names (`.sig01`, ..., `.sigma`, then the fixed effects)."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ..errors import FitError, SpecError
from . import params
from .profile import interval_frame, level_labels, profile_fit, select

METHODS = ("wald", "profile", "boot")


def confint(fit, method: str = "profile", level: float = 0.95, parm=None, *, nsim: int = 500,
            seed: int | None = None, boot_type: str = "perc", **boot_options):
    """See `Fit.confint`."""
    m = str(method).lower()
    if m not in METHODS:
        raise SpecError(f"method must be one of {', '.join(repr(x) for x in METHODS)}, got {method!r}")
    level_labels(level)
    if fit.method == "hmc":
        raise FitError("an hmc fit is a posterior: its intervals are credible intervals "
                       "(fit.posterior, az.summary(fit.idata)), not confidence intervals")
    if m == "wald":
        return wald(fit, level, parm)
    if m == "profile":
        prof = profile_fit(fit, parm=_profile_parm(fit, parm), progress=boot_options.get("progress", True))
        return prof.confint(level, parm)
    return _boot(fit, level, parm, nsim, seed, boot_type, boot_options)


def _names(fit) -> tuple[list[str], int]:
    nm = params.name_map(fit.design)
    return list(nm.index) + list(fit.design.fixef_names), len(nm)


def _profile_parm(fit, parm):
    """Profile only what is asked for (names resolved here, so errors name the argument)."""
    if parm is None:
        return None
    names, nv = _names(fit)
    return [names[i] for i in select(names, nv, parm)]


def wald(fit, level: float = 0.95, parm=None):
    """β ± z·SE for the fixed effects; NaN for the variance parameters, as lme4 (their sampling
    distribution is far from normal near zero: use the profile)."""
    names, nv = _names(fit)
    idx = select(names, nv, parm)
    z = norm.ppf(0.5 + level / 2)
    beta, se = fit.beta_hat, np.sqrt(np.diag(fit.vcov_beta))
    lo = [np.nan if i < nv else beta[i - nv] - z * se[i - nv] for i in idx]
    hi = [np.nan if i < nv else beta[i - nv] + z * se[i - nv] for i in idx]
    return interval_frame([names[i] for i in idx], lo, hi, level, "wald", params.name_map(fit.design))


def _boot(fit, level, parm, nsim, seed, boot_type, boot_options):
    """Percentile or basic intervals from `fit.bootstrap` (lme4's bootMer)."""
    if boot_type not in ("perc", "basic"):
        raise SpecError(f"boot_type must be 'perc' or 'basic', got {boot_type!r}")
    boot = getattr(fit, "bootstrap", None)
    if boot is None:
        raise FitError("bootstrap intervals need the parametric bootstrap (glmmbayes.bootstrap), "
                       "which this installation does not have")
    res = boot(nsim, seed, **boot_options)
    names, nv = _names(fit)
    want = None if parm is None else [names[i] for i in select(names, nv, parm)]
    ci = res.confint(level=level, kind=boot_type, parm=want)
    lme4 = getattr(res, "lme4", {})  # the bootstrap's variance names -> lme4's .sigNN, as the other methods
    return interval_frame([lme4.get(n, n) for n in ci.index], ci["lower"], ci["upper"], level, f"boot ({boot_type})",
                          params.name_map(fit.design))
