"""`Profile`: lme4's profile.merMod result -- ζ of each parameter over a grid, with the other
parameters re-optimized -- its ζ plot and its confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from ..errors import SpecError
from ..progress import progress_bar
from .profiler import Profiler


def select(names: list[str], nvar: int, parm) -> list[int]:
    """Indices of `parm` (None: all; names; integer positions; lme4's "theta_" / "beta_")."""
    if parm is None:
        return list(range(len(names)))
    items = [parm] if isinstance(parm, (str, int, np.integer)) else list(parm)
    out: list[int] = []
    for it in items:
        if isinstance(it, (int, np.integer)):
            if not 0 <= int(it) < len(names):
                raise SpecError(f"parm: position {it} is outside 0..{len(names) - 1}")
            idx = [int(it)]
        elif it == "theta_":
            idx = list(range(nvar))
        elif it == "beta_":
            idx = list(range(nvar, len(names)))
        elif it in names:
            idx = [names.index(it)]
        else:
            raise SpecError(f"parm: unknown parameter {it!r}; parameters are {', '.join(names)} "
                            "(or 'theta_' / 'beta_')")
        out += [i for i in idx if i not in out]
    return out


def level_labels(level: float) -> tuple[str, str]:
    """lme4's column names for a confidence level: ("2.5 %", "97.5 %")."""
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1, got {level!r}")
    a = (1 - level) / 2
    return tuple(f"{100 * p:.3g} %" for p in (a, 1 - a))


def interval_frame(names, lower, upper, level: float, method: str, name_map=None) -> pd.DataFrame:
    """The confint table: rows by lme4's names, columns lower/upper (lme4's headers in attrs)."""
    out = pd.DataFrame({"lower": np.asarray(lower, float), "upper": np.asarray(upper, float)},
                       index=pd.Index(list(names), name="parameter"))
    out.attrs.update(level=level, method=method, labels=level_labels(level))
    if name_map is not None:
        out.attrs["name_map"] = name_map
    return out


@dataclass(frozen=True)
class Profile:
    """ζ profiles of a likelihood fit (lme4's `profile.merMod`).

    table: one row per evaluated point, columns `.par` (the profiled parameter), `.zeta`, then
        the value of every parameter there (the others re-optimized), as lme4's data frame.
    estimates: the parameters at the optimum; name_map: the variance parameters by name.
    A straight ζ line means the Wald interval is fine; a curved one means the likelihood is
    skewed and the profile interval is the one to use.
    """

    table: pd.DataFrame
    estimates: pd.Series
    name_map: pd.DataFrame
    messages: tuple[str, ...] = ()
    profiler: Profiler | None = field(default=None, repr=False, compare=False)

    @property
    def parameters(self) -> list[str]:
        return list(dict.fromkeys(self.table[".par"]))

    def zeta(self, name: str) -> pd.DataFrame:
        """(value, ζ) of one parameter's profile, sorted by value."""
        if name not in self.parameters:
            raise SpecError(f"no profile for {name!r}; profiled: {', '.join(self.parameters)}")
        t = self.table[self.table[".par"] == name]
        return pd.DataFrame({"value": t[name].to_numpy(), "zeta": t[".zeta"].to_numpy()})

    def confint(self, level: float = 0.95, parm=None) -> pd.DataFrame:
        """Profile confidence intervals: where ζ crosses ±z_{(1+level)/2} (found exactly by
        root-finding on the profile, not by interpolation); the parameter's bound where the
        profile never gets there (a variance near 0, a correlation near ±1)."""
        z = norm.ppf(0.5 + level / 2)
        level_labels(level)
        names = [n for n in self.profiler.names if n in self.parameters] if self.profiler else self.parameters
        idx = select(names, len(self.name_map), parm)
        lo, hi = [], []
        for i in idx:
            nm = names[i]
            if self.profiler is not None:
                j = self.profiler.names.index(nm)
                lo.append(self.profiler.crossing(j, -z))
                hi.append(self.profiler.crossing(j, z))
            else:
                zt = self.zeta(nm)
                lo.append(float(np.interp(-z, zt["zeta"], zt["value"], left=np.nan)))
                hi.append(float(np.interp(z, zt["zeta"], zt["value"], right=np.nan)))
        return interval_frame([names[i] for i in idx], lo, hi, level, "profile", self.name_map)

    def plot(self, parm=None, levels=(0.5, 0.8, 0.9, 0.95, 0.99), ax=None):
        """ζ against each parameter, one panel each (lme4's xyplot of a profile): the profile as
        a line, the Wald ζ (a straight line through the estimate) dashed, horizontal lines at the
        ζ of the given confidence levels. Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        names = self.parameters
        idx = select(names, sum(n in self.name_map.index for n in names), parm)
        n = len(idx)
        ncol = min(n, 3)
        nrow = math.ceil(n / ncol)
        if ax is None:
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
            axes = axes.ravel()
        else:
            axes = np.atleast_1d(ax).ravel()
            fig = axes[0].figure
        zl = [norm.ppf(0.5 + lv / 2) for lv in levels]
        for a, i in zip(axes, idx):
            nm = names[i]
            zt = self.zeta(nm)
            a.plot(zt["value"], zt["zeta"], "-", color="C0", label="profile ζ")
            est = float(self.estimates[nm])
            se = self._wald_se(nm)
            if se:
                xs = np.array([zt["value"].min(), zt["value"].max()])
                a.plot(xs, (xs - est) / se, "--", color="0.5", lw=0.8, label="Wald")
            for zv in zl:
                a.axhline(zv, color="0.85", lw=0.6)
                a.axhline(-zv, color="0.85", lw=0.6)
            a.axhline(0, color="0.6", lw=0.6)
            a.set_title(nm)
            a.set_ylabel("ζ")
        for a in axes[n:]:
            a.set_visible(False)
        axes[0].legend(fontsize="small")
        fig.tight_layout()
        return fig

    def _wald_se(self, name: str) -> float | None:
        if self.profiler is None:
            return None
        se = self.profiler.se[self.profiler.names.index(name)]
        return float(se) if se > 0 else None


def profile_fit(fit, parm=None, alphamax: float = 0.01, maxpts: int = 100, delta_cutoff: float = 1 / 8,
                progress: bool = True) -> Profile:
    """ζ profiles of `fit` (see `Fit.profile`); `progress`: a bar over the parameters, shown
    when the profiles take longer than half a second."""
    prof = Profiler(fit)
    idx = select(prof.names, prof.nv, parm)
    cutoff = math.sqrt(chi2.ppf(1 - alphamax, len(prof.names)))
    delta = cutoff * delta_cutoff
    rows = []
    for j in progress_bar(idx, desc="profile", unit="parameter", disable=not progress, delay=0.5):
        _walk(prof, j, cutoff, delta, maxpts)
        pts = sorted(prof.points[j], key=lambda p: p[0])
        rows.append(pd.DataFrame([[prof.names[j], 0.0, *prof.psi_hat]], columns=[".par", ".zeta", *prof.names]))
        rows.append(pd.DataFrame([[prof.names[j], z, *full] for _, z, full, _ in pts],
                                 columns=[".par", ".zeta", *prof.names]))
    table = pd.concat(rows, ignore_index=True)
    table = table.sort_values([".par", ".zeta"], key=lambda c: c.map(prof.names.index) if c.name == ".par" else c,
                              kind="stable").reset_index(drop=True)
    est = pd.Series(prof.psi_hat, index=prof.names, name="estimate")
    return Profile(table, est, prof.map, tuple(dict.fromkeys(prof.messages)), prof)


def _walk(prof: Profiler, j: int, cutoff: float, delta: float, maxpts: int) -> None:
    """Steps of about `delta` in ζ away from the estimate both ways, until |ζ| > cutoff or a bound
    (lme4's nextpar: the step from the last two points' slope, capped at 10 times the last)."""
    x_hat = prof.psi_hat[j]
    se = prof.se[j] if prof.se[j] > 0 else 0.1 * max(abs(x_hat), 1.0)
    lo, hi = prof.lower[j], prof.upper[j]
    for s in (1.0, -1.0):
        x_prev, z_prev = x_hat, 0.0
        x = x_hat + s * delta * se
        for _ in range(maxpts // 2):
            x = min(max(x, lo), hi)
            if x == x_prev:
                break
            z = prof.zeta(j, x)
            if abs(z) > cutoff or x in (lo, hi):
                break
            dz = z - z_prev
            step = delta * (x - x_prev) / dz if s * dz > 0 else (x - x_prev)
            step = float(np.clip(step, -10 * abs(x - x_prev), 10 * abs(x - x_prev)))
            x_prev, z_prev, x = x, z, x + step
