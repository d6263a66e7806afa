"""Priors for the Bayesian methods: explicit, printable, overridable per parameter.

The defaults are weakly informative and scaled to the data (see docs/priors.md for what and why):

- fixed effects, on the *centred* predictor basis (the intercept is the linear predictor at the
  predictor means, as rstanarm/brms/bambi do): ``normal(0, 2.5·scale/sd(x_j))`` for slopes and
  ``normal(loc, 2.5·scale)`` for the intercept, with ``scale = sd(y)`` and ``loc = mean(y)`` for the
  gaussian/identity LMM and ``scale = 1``, ``loc = 0`` on the link scale otherwise;
- random-effect standard deviations: ``half_student_t(3, 2.5·scale)``;
- correlations of a vector-valued term: ``lkj(2)`` (mildly favours smaller correlations);
- the residual sd of a gaussian model: ``half_student_t(3, 2.5·sd(y))``; the shape of a Gamma
  model: ``gamma(0.01, 0.01)`` (brms' default).

Overrides: ``priors={"fixef": "flat"}`` (improper flat prior on β), ``{"fixef": "normal(0, 5)"}``
(every slope), ``{"fixef": {"age": "normal(0, 1)", "(Intercept)": "student_t(3, 0, 5)"}}``,
``{"sd": "half_normal(1)"}``, ``{"sd": {"district": "half_normal(1)"}}`` (a group, or
``"group:coef"``), ``{"cor": 4}`` or ``{"cor": {"Subject": "lkj(1)"}}``, ``{"sigma": ...}``,
``{"shape": ...}``, and ``{"center": False}`` to put the intercept prior on the uncentred intercept.
A prior is a string such as ``"normal(0, 2.5)"``, a ``Prior``, or a tuple ``("normal", 0, 2.5)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import stats

from .errors import SpecError

# name -> (parameter names, support)
_DISTS: dict[str, tuple[tuple[str, ...], str]] = {
    "normal": (("mu", "sigma"), "real"),
    "student_t": (("nu", "mu", "sigma"), "real"),
    "flat": ((), "real"),
    "half_normal": (("sigma",), "positive"),
    "half_student_t": (("nu", "sigma"), "positive"),
    "half_cauchy": (("beta",), "positive"),
    "exponential": (("lam",), "positive"),
    "gamma": (("alpha", "beta"), "positive"),
    "lkj": (("eta",), "correlation"),
}
_ALIASES = {"t": "student_t", "half_t": "half_student_t", "halfnormal": "half_normal",
            "halft": "half_student_t", "studentt": "student_t", "cauchy_half": "half_cauchy",
            "halfcauchy": "half_cauchy", "uniform_improper": "flat"}


@dataclass(frozen=True)
class Prior:
    """One prior distribution, e.g. ``Prior("normal", (0.0, 2.5))``."""

    dist: str
    args: tuple[float, ...] = ()
    note: str = field(default="", compare=False)  # how a default was scaled

    def __post_init__(self):
        d = _ALIASES.get(self.dist, self.dist)
        object.__setattr__(self, "dist", d)
        if d not in _DISTS:
            raise SpecError(f"unknown prior {self.dist!r}; available: {', '.join(_DISTS)}")
        names, _ = _DISTS[d]
        args = tuple(float(a) for a in self.args)
        if len(args) != len(names):
            raise SpecError(f"prior {d} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        for nm, a in zip(names, args):
            if nm != "mu" and not a > 0:
                raise SpecError(f"prior {d}: {nm} must be > 0, got {a}")
        object.__setattr__(self, "args", args)

    @property
    def support(self) -> str:
        return _DISTS[self.dist][1]

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(zip(_DISTS[self.dist][0], self.args))

    def __str__(self) -> str:
        a = ", ".join(f"{x:.4g}" for x in self.args)
        return f"{self.dist}({a})"

    def pymc_dist(self):
        """The PyMC distribution (unregistered, ``.dist``) of this prior."""
        import pymc as pm

        kw = {k: np.float64(v) for k, v in self.kwargs.items()}  # float64: PyMC casts exact floats to float32
        return {
            "normal": lambda: pm.Normal.dist(**kw),
            "student_t": lambda: pm.StudentT.dist(**kw),
            "half_normal": lambda: pm.HalfNormal.dist(**kw),
            "half_student_t": lambda: pm.HalfStudentT.dist(**kw),
            "half_cauchy": lambda: pm.HalfCauchy.dist(**kw),
            "exponential": lambda: pm.Exponential.dist(**kw),
            "gamma": lambda: pm.Gamma.dist(**kw),
        }[self.dist]()

    def pymc(self, name: str, **kw):
        """Register this prior in the current PyMC model as variable `name`."""
        import pymc as pm

        k = {nm: np.float64(v) for nm, v in self.kwargs.items()}
        cls = {"normal": pm.Normal, "student_t": pm.StudentT, "half_normal": pm.HalfNormal,
               "half_student_t": pm.HalfStudentT, "half_cauchy": pm.HalfCauchy,
               "exponential": pm.Exponential, "gamma": pm.Gamma}.get(self.dist)
        if self.dist == "flat":
            return pm.Flat(name, **kw)
        if cls is None:
            raise SpecError(f"prior {self} cannot be used for a scalar parameter")
        return cls(name, **k, **kw)

    def logpdf(self, x) -> np.ndarray:
        """log density with scipy (independent of PyMC; used by the tests)."""
        k = self.kwargs
        x = np.asarray(x, float)
        if self.dist == "normal":
            return stats.norm.logpdf(x, k["mu"], k["sigma"])
        if self.dist == "student_t":
            return stats.t.logpdf(x, k["nu"], k["mu"], k["sigma"])
        if self.dist == "flat":
            return np.zeros_like(x)
        if self.dist == "half_normal":
            return stats.halfnorm.logpdf(x, scale=k["sigma"])
        if self.dist == "half_student_t":
            return np.log(2.0) + stats.t.logpdf(x, k["nu"], 0.0, k["sigma"])
        if self.dist == "half_cauchy":
            return stats.halfcauchy.logpdf(x, scale=k["beta"])
        if self.dist == "exponential":
            return stats.expon.logpdf(x, scale=1.0 / k["lam"])
        if self.dist == "gamma":
            return stats.gamma.logpdf(x, k["alpha"], scale=1.0 / k["beta"])
        raise SpecError(f"no scalar density for {self}")


_PAT = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\((.*)\))?\s*$")


def as_prior(x, what: str = "prior") -> Prior:
    """A Prior from a Prior, a string ``"normal(0, 1)"``, a tuple ``("normal", 0, 1)`` or a number
    (only for correlations: the LKJ η)."""
    if isinstance(x, Prior):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return Prior("lkj", (float(x),))
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], str):
        return Prior(x[0], tuple(x[1:]))
    if isinstance(x, str):
        m = _PAT.match(x)
        if not m:
            raise SpecError(f"cannot read {what} {x!r}; write it like 'normal(0, 2.5)'")
        args = () if not m.group(2) or not m.group(2).strip() else tuple(
            float(a) for a in m.group(2).split(","))
        return Prior(m.group(1).lower(), args)
    raise SpecError(f"cannot read {what} {x!r}; use a string like 'normal(0, 2.5)' or a glmmbayes.priors.Prior")


@dataclass(frozen=True)
class Priors:
    """The resolved priors of one model: every parameter has exactly one entry."""

    fixef: Mapping[str, Prior]  # by coefficient name (the intercept prior is on the centred basis if `centered`)
    centered: bool
    sd: Mapping[tuple[str, str], Prior]  # (group, coef) -> prior on that random-effect sd
    cor: Mapping[str, Prior]  # group -> lkj prior (vector-valued terms only)
    dispersion: Mapping[str, Prior]  # "sigma" (gaussian) or "shape" (Gamma)
    flat_fixef: bool = False
    re_params: Mapping[str, Prior] = field(default_factory=dict)  # estimated non-normal RE parameters

    def table(self):
        import pandas as pd

        rows = []
        for nm, p in self.fixef.items():
            where = "centred intercept" if (self.centered and nm == "(Intercept)") else ""
            rows.append(("fixef", nm, str(p), "; ".join(x for x in (where, p.note) if x)))
        for (g, c), p in self.sd.items():
            rows.append(("sd", f"{g}:{c}", str(p), p.note))
        for g, p in self.cor.items():
            rows.append(("cor", g, str(p), p.note))
        for nm, p in self.dispersion.items():
            rows.append((nm, nm, str(p), p.note))
        for nm, p in self.re_params.items():
            rows.append(("re", nm, str(p), p.note))
        return pd.DataFrame(rows, columns=["parameter", "term", "prior", "note"])

    def __str__(self) -> str:
        t = self.table()
        w = [max(len(str(v)) for v in list(t[c]) + [c]) for c in t.columns[:3]]
        lines = ["Priors:"]
        for _, r in t.iterrows():
            lines.append(f"  {r['parameter']:<{w[0]}}  {r['term']:<{w[1]}}  {r['prior']:<{w[2]}}  {r['note']}".rstrip())
        return "\n".join(lines)


def _scale_loc(design) -> tuple[float, float, str]:
    fam = design.family
    if fam.is_lmm:
        sy = float(np.std(design.y, ddof=1)) if design.n > 1 else 1.0
        return (sy if sy > 0 else 1.0), float(np.mean(design.y)), "sd(y)"
    return 1.0, 0.0, ""


def _intercept_index(design) -> int | None:
    names = list(design.fixef_names)
    if "(Intercept)" in names:
        j = names.index("(Intercept)")
        if np.allclose(design.X[:, j], 1.0):
            return j
    return None


def resolve_priors(design, user: Mapping[str, Any] | None = None) -> Priors:
    """Defaults for `design`, with the user's overrides applied; unknown keys are an error."""
    user = dict(user or {})
    fam_disp = design.family.dispersion
    re_dist = design.spec.re_dist
    allowed = {"fixef", "intercept", "center"} | ({fam_disp.name} if fam_disp else set())
    allowed |= {"sd", "cor"} if re_dist is None else {"re"}
    unknown = set(user) - allowed
    if unknown:
        raise SpecError(f"unknown prior keys {sorted(unknown)}; available: {sorted(allowed)}")
    scale, loc, sname = _scale_loc(design)
    sfac = f"·{sname}" if sname else ""
    centered = bool(user.get("center", True))
    icpt = _intercept_index(design)
    names = list(design.fixef_names)

    # ---- fixed effects
    fixef: dict[str, Prior] = {}
    fx = user.get("fixef")
    flat = isinstance(fx, str) and fx.strip().lower() == "flat"
    for j, nm in enumerate(names):
        if j == icpt:
            fixef[nm] = Prior("normal", (loc, 2.5 * scale), note=f"normal(mean(y), 2.5{sfac})" if sname else "")
        else:
            sx = float(np.std(design.X[:, j], ddof=1)) if design.n > 1 else 1.0
            sx = sx if sx > 0 else 1.0
            fixef[nm] = Prior("normal", (0.0, 2.5 * scale / sx), note=f"2.5{sfac}/sd(x) with sd(x) = {sx:.4g}")
    if flat:
        fixef = {nm: Prior("flat") for nm in names}
    elif isinstance(fx, Mapping):
        for nm, p in fx.items():
            if nm not in fixef:
                raise SpecError(f"prior for unknown fixed effect {nm!r}; fixed effects: {names}")
            fixef[nm] = as_prior(p, f"prior for {nm!r}")
    elif fx is not None:
        p = as_prior(fx, "fixef prior")
        for j, nm in enumerate(names):
            if j != icpt:
                fixef[nm] = p
    if "intercept" in user:
        if icpt is None:
            raise SpecError("an intercept prior was given but the model has no intercept")
        fixef[names[icpt]] = as_prior(user["intercept"], "intercept prior")
    for nm, p in fixef.items():
        if p.support != "real":
            raise SpecError(f"prior {p} for fixed effect {nm!r} must be on the real line")

    # ---- random-effect sds and correlations
    sd: dict[tuple[str, str], Prior] = {}
    cor: dict[str, Prior] = {}
    usd = user.get("sd")
    ucor = user.get("cor")
    for t in design.terms if re_dist is None else ():
        for c in t.coef_names:
            p = Prior("half_student_t", (3.0, 2.5 * scale), note=f"2.5{sfac}" if sname else "")
            if isinstance(usd, Mapping):
                for key in (t.group_name, f"{t.group_name}:{c}"):
                    if key in usd:
                        p = as_prior(usd[key], f"sd prior for {key!r}")
            elif usd is not None:
                p = as_prior(usd, "sd prior")
            if p.support != "positive":
                raise SpecError(f"prior {p} for the sd of {t.group_name}:{c} must be on (0, inf)")
            sd[(t.group_name, c)] = p
        if t.k > 1:
            p = Prior("lkj", (2.0,))
            if isinstance(ucor, Mapping):
                if t.group_name in ucor:
                    p = as_prior(ucor[t.group_name], f"cor prior for {t.group_name!r}")
            elif ucor is not None:
                p = as_prior(ucor, "cor prior")
            if p.dist != "lkj":
                raise SpecError(f"correlation prior must be lkj(eta), got {p}")
            cor[t.group_name] = p
    if isinstance(usd, Mapping):
        known = {t.group_name for t in design.terms} | {f"{g}:{c}" for g, c in sd}
        bad = set(usd) - known
        if bad:
            raise SpecError(f"sd prior for unknown terms {sorted(bad)}; known: {sorted(known)}")

    # ---- dispersion
    disp: dict[str, Prior] = {}
    if fam_disp is not None and design.dispersion_estimated:
        nm = fam_disp.name
        if nm in user:
            disp[nm] = as_prior(user[nm], f"{nm} prior")
        else:
            sy = (float(np.std(design.y, ddof=1)) if design.n > 1 else 1.0) or 1.0
            dist, args, note = fam_disp.default_prior(sy)
            disp[nm] = Prior(dist, args, note=note)
        for nm, p in disp.items():
            if p.support != "positive":
                raise SpecError(f"prior {p} for {nm} must be on (0, inf)")
    return Priors(fixef, centered and icpt is not None, sd, cor, disp, flat_fixef=flat,
                  re_params=_re_param_priors(re_dist, user.get("re")))


def _re_param_priors(re_dist, user) -> dict[str, Prior]:
    """Priors of the estimated parameters of a non-normal random effect: half_normal(10) each
    unless the user's {"re": prior or {parameter: prior}} says otherwise."""
    out: dict[str, Prior] = {}
    if re_dist is None:
        return out
    if isinstance(user, Mapping):
        bad = set(user) - set(re_dist.estimated)
        if bad:
            raise SpecError(f"re prior for {sorted(bad)}: the estimated parameters are {list(re_dist.estimated)}")
    for nm in re_dist.estimated:
        p = Prior("half_normal", (10.0,), note="weakly informative")
        if isinstance(user, Mapping) and nm in user:
            p = as_prior(user[nm], f"prior for {nm!r}")
        elif user is not None and not isinstance(user, Mapping):
            p = as_prior(user, "re prior")
        if p.support != "positive":
            raise SpecError(f"prior {p} for the random-effect parameter {nm!r} must be on (0, inf)")
        out[nm] = p
    return out


def centering_matrix(design, priors: Priors) -> np.ndarray:
    """C with γ = C β the coefficients the fixed-effect priors are on (the centred basis:
    γ_intercept = β_intercept + Σ_j mean(x_j) β_j; the slopes unchanged)."""
    p = design.p
    C = np.eye(p)
    j = _intercept_index(design)
    if priors.centered and j is not None:
        C[j, :] = design.X.mean(axis=0)
        C[j, j] = 1.0
    return C
