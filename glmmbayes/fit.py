"""`Fit`: the one immutable result type every method returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .design import Design, _group_labels
from .errors import DataError


def varcorr_table(design: Design, theta: np.ndarray, phi: float = 1.0) -> pd.DataFrame:
    """Variance components at θ (and dispersion φ) like R's as.data.frame(VarCorr())."""
    scale = phi if design.family.is_lmm else 1.0  # lme4's LMM Λ is relative to σ
    rows = []
    for t, T in zip(design.terms, design.structure.lambdas(np.asarray(theta, float))):
        S = scale * T @ T.T
        sd = np.sqrt(np.diag(S))
        for i, c in enumerate(t.coef_names):
            rows.append((t.group_name, c, None, S[i, i], sd[i]))
        for j in range(t.k):
            for i in range(j + 1, t.k):
                corr = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((t.group_name, t.coef_names[j], t.coef_names[i], S[i, j], corr))
    if design.family.has_dispersion:
        rows.append(("Residual", None, None, phi, math.sqrt(phi)))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


@dataclass(frozen=True)
class Fit:
    """A fitted GLMM. Names and numbers follow lme4 (`fixef`, `VarCorr`, `ranef`, `logLik`).

    `estimate_kind` says what the point estimates are: "ml" (maximum likelihood), "mode"
    (joint/posterior mode), "mean" (posterior mean) or "pql" (quasi-likelihood).
    """

    design: Design
    method: str
    beta_hat: np.ndarray
    vcov_beta: np.ndarray
    theta_hat: np.ndarray
    phi: float  # dispersion: sigma^2 for gaussian, 1/shape for Gamma, 1 otherwise
    u: np.ndarray  # spherical conditional modes (b = Λ(θ) u)
    u_condvar: tuple  # per term, (nlevels, k, k) conditional covariance of u
    loglik: float | None  # fully normalized log-likelihood; None where not defined (PQL)
    converged: bool
    messages: tuple[str, ...]
    seconds: float
    nAGQ: int | None = None
    estimate_kind: str = "ml"
    reml_criterion: float | None = None
    optinfo: Mapping[str, Any] = field(default_factory=dict, repr=False)
    raw: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- parameters
    @property
    def spec(self):
        return self.design.spec

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.beta_hat, index=list(self.design.fixef_names), name="fixef")

    @property
    def vcov(self) -> pd.DataFrame:
        nm = list(self.design.fixef_names)
        return pd.DataFrame(self.vcov_beta, index=nm, columns=nm)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=list(self.design.fixef_names), name="se")

    @property
    def idata(self):
        """ArviZ InferenceData of a posterior fit (method="hmc"); None for other methods."""
        return self.raw if type(self.raw).__name__ == "InferenceData" else None

    @property
    def theta(self) -> pd.Series:
        return pd.Series(self.theta_hat, index=list(self.design.theta_names), name="theta")

    @property
    def sigma(self) -> float:
        """Residual standard deviation (LMM) or sqrt(dispersion); 1 for binomial/poisson."""
        return math.sqrt(self.phi)

    @property
    def _re_scale(self) -> float:
        # lme4's LMM Λ is relative to σ; GLMM Λ is absolute
        return self.phi if self.design.family.is_lmm else 1.0

    def re_covariances(self) -> list[np.ndarray]:
        """Covariance matrix of each term's random effects."""
        return [self._re_scale * T @ T.T for T in self.design.structure.lambdas(self.theta_hat)]

    @property
    def varcorr(self) -> pd.DataFrame:
        """Like R's as.data.frame(VarCorr(fit)): grp, var1, var2, vcov, sdcor."""
        return varcorr_table(self.design, self.theta_hat, self.phi)

    # ---------------------------------------------------------------- random effects
    def _b_blocks(self) -> list[np.ndarray]:
        s = self.design.structure
        out = []
        for i, (t, T) in enumerate(zip(self.design.terms, s.lambdas(self.theta_hat))):
            U = self.u[s.u_offsets[i] : s.u_offsets[i + 1]].reshape(t.nlevels, t.k)
            out.append(U @ T.T)
        return out

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes (means for posterior fits) of the random effects, per grouping factor."""
        return {
            t.group_name: pd.DataFrame(B, index=pd.Index(t.levels, name=t.group_name), columns=list(t.coef_names))
            for t, B in zip(self.design.terms, self._b_blocks())
        }

    @property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional covariance of each level's random effects, (nlevels, k, k) (lme4's postVar)."""
        out = {}
        for t, T, C in zip(self.design.terms, self.design.structure.lambdas(self.theta_hat), self.u_condvar):
            out[t.group_name] = self._re_scale * np.einsum("ij,mjk,lk->mil", T, C, T)
        return out

    def ranef_frame(self) -> pd.DataFrame:
        """Tidy random effects like R's as.data.frame(ranef(fit, condVar = TRUE))."""
        parts = []
        cv = self.ranef_condvar
        for name, df in self.ranef.items():
            sd = np.sqrt(np.diagonal(cv[name], axis1=1, axis2=2))
            for j, c in enumerate(df.columns):
                parts.append(pd.DataFrame({"grpvar": name, "term": c, "grp": df.index.astype(str),
                                           "condval": df[c].to_numpy(), "condsd": sd[:, j]}))
        return pd.concat(parts, ignore_index=True)

    # ---------------------------------------------------------------- likelihood summaries
    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def ngrps(self) -> dict[str, int]:
        return self.design.ngrps

    @property
    def npar(self) -> int:
        return self.design.p + len(self.theta_hat) + int(self.design.family.has_dispersion)

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    @property
    def deviance(self) -> float | None:
        """lme4's deviance(): -2 logLik for an ML LMM, the REML criterion for a REML fit, and the
        conditional deviance (sum of squared deviance residuals at the modes) for a GLMM."""
        fam = self.design.family
        if fam.is_lmm:
            return self.reml_criterion if self.reml_criterion is not None else (
                None if self.loglik is None else -2.0 * self.loglik)
        return float(np.sum(fam.unit_deviance(self.design.y, self.fitted_values(), self.design.wt)))

    @property
    def aic(self) -> float | None:
        return None if self.loglik is None else -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float | None:
        return None if self.loglik is None else -2.0 * self.loglik + math.log(self.nobs) * self.npar

    # ---------------------------------------------------------------- fitted values
    def linear_predictor(self) -> np.ndarray:
        d = self.design
        s = d.structure
        return d.X @ self.beta_hat + d.offset + s.zl_mult(s.zl_values(self.theta_hat), self.u)

    def fitted_values(self) -> np.ndarray:
        return self.design.family.linkinv(self.linear_predictor())

    @property
    def fitted(self) -> pd.Series:
        """Fitted means on the response scale at the conditional modes (proportions for binomial)."""
        return pd.Series(self.fitted_values(), index=self.design.row_index, name="fitted")

    def residuals(self, type: str = "deviance") -> pd.Series:
        """Residuals of type "deviance" (lme4's default for GLMMs), "pearson", "response" or "working"."""
        d = self.design
        fam = d.family
        eta = self.linear_predictor()
        mu = fam.linkinv(eta)
        y, wt = d.y, d.wt
        if type == "response":
            r = y - mu
        elif type == "pearson":
            r = (y - mu) * np.sqrt(wt / fam.variance(mu))
        elif type == "working":
            r = (y - mu) / fam.mu_eta(eta)
        elif type == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(fam.unit_deviance(y, mu, wt), 0.0))
        else:
            raise ValueError(f"residual type must be deviance, pearson, response or working, got {type!r}")
        if fam.is_lmm and type == "deviance":
            r = y - mu
        return pd.Series(r, index=d.row_index, name=f"{type} residuals")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: str | None = None,
        type: str = "link",
        allow_new_levels: bool = False,
    ) -> pd.Series:
        """Predictions like lme4's predict.merMod (a Series indexed like the data or newdata).

        re_form=None includes every random effect; re_form="~0" (or "NA") gives population-level
        predictions. type="link" or "response". Unseen levels raise unless allow_new_levels,
        in which case their random effects are 0.
        """
        if type not in ("link", "response"):
            raise ValueError(f"type must be 'link' or 'response', got {type!r}")
        population = re_form is not None and str(re_form).replace(" ", "") in ("~0", "NA", "~-1")
        if re_form is not None and not population:
            raise ValueError("re_form must be None (all random effects) or '~0' (none)")
        d = self.design
        if newdata is None:
            eta = self.linear_predictor() if not population else d.X @ self.beta_hat + d.offset
        else:
            X = d.new_fixed(newdata)
            eta = X @ self.beta_hat + d.new_offset(newdata)
            if not population:
                for (codes, Xt), t, B in zip(d.new_terms(newdata), d.terms, self._b_blocks()):
                    unseen = codes < 0
                    if unseen.any() and not allow_new_levels:
                        i = int(np.flatnonzero(unseen)[0])
                        label = _group_labels(t.group_vars, newdata)[i]
                        raise DataError(
                            f"newdata row {i} has level '{label}' of '{t.group_name}', not seen in "
                            f"the fit ({int(unseen.sum())} such row{'s' if unseen.sum() > 1 else ''}); pass allow_new_levels=True to "
                            "predict them at the population level"
                        )
                    contrib = np.einsum("ij,ij->i", Xt, B[np.maximum(codes, 0)])
                    eta = eta + np.where(unseen, 0.0, contrib)
        out = d.family.linkinv(eta) if type == "response" else eta
        index = d.row_index if newdata is None else newdata.index
        return pd.Series(out, index=index, name=f"predicted ({type})")

    def simulate(self, nsim: int = 1, seed: int | None = None, use_u: bool = False) -> pd.DataFrame:
        """Simulate responses from the fitted model (new random effects unless use_u), as lme4.

        Binomial responses are returned as counts of successes when the model has trials > 1.
        """
        rng = np.random.default_rng(seed)
        d = self.design
        s = d.structure
        V = s.zl_values(self.theta_hat)
        base = d.X @ self.beta_hat + d.offset
        scale = math.sqrt(self._re_scale)
        out = {}
        for i in range(nsim):
            u = self.u if use_u else rng.standard_normal(s.q) * scale
            eta = base + s.zl_mult(V, u)
            y = d.family.simulate(rng, eta, d.wt, self.phi)
            if d.family.name == "binomial" and np.any(d.wt > 1):
                y = np.round(y * d.wt)
            out[f"sim_{i + 1}"] = y
        return pd.DataFrame(out, index=d.row_index)

    # ---------------------------------------------------------------- diagnostics
    def laplace_adequacy(self, nAGQ: int = 25, **kw) -> pd.DataFrame:
        """Per-cluster Laplace vs AGQ(nAGQ) log-integrals at this fit's parameters, with advice on
        nAGQ in `.attrs["summary"]` / `.attrs["advice"]` (see glmmbayes.methods.agq.laplace_adequacy)."""
        from .methods.agq import laplace_adequacy

        return laplace_adequacy(self, nAGQ=nAGQ, **kw)

    # ---------------------------------------------------------------- printing
    def summary(self) -> str:
        from .report import fit_summary

        return fit_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        ll = "NA" if self.loglik is None else f"{self.loglik:.4f}"
        return f"<Fit {self.method} {self.spec.formula!r} logLik={ll} converged={self.converged}>"
