"""`Fit`: the one immutable result type. Built in one place (`glmmbayes.build.build_fit`) from a
method's `Estimate`; names and numbers follow lme4 (`fixef`, `VarCorr`, `ranef`, `logLik`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from .design import Design, group_labels
from . import display
from .errors import DataError
from .estimate import Estimate

if TYPE_CHECKING:
    from .spec import Spec


def varcorr_table(design: Design, theta: np.ndarray, phi: float = 1.0,
                  re_params: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Variance components at θ (and dispersion φ) like R's as.data.frame(VarCorr()).

    For a non-normal random effect the row gives the variance and sd of b = h(u) at the
    distribution's parameters `re_params`."""
    fam = design.family
    rows = []
    re = design.spec.re_dist
    if re is not None:
        t = design.terms[0]
        mean, sd = re.entry_moments(re_params)
        rows.append((t.group_name, t.coef_names[0], None, sd * sd, sd))
    else:
        scale = fam.re_scale(phi)
        for t, T in zip(design.terms, design.structure.lambdas(np.asarray(theta, float))):
            S = scale * T @ T.T
            sd = np.sqrt(np.diag(S))
            for i, c in enumerate(t.coef_names):
                rows.append((t.group_name, c, None, S[i, i], sd[i]))
            for j in range(t.k):
                for i in range(j + 1, t.k):
                    corr = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    rows.append((t.group_name, t.coef_names[j], t.coef_names[i], S[i, j], corr))
    if fam.dispersion is not None and fam.dispersion.residual_row:
        rows.append(("Residual", None, None, phi, math.sqrt(phi)))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


@dataclass(frozen=True)
class FitCall:
    """How a Fit was made: the method and its checked options (lme4's `getCall`).

    `refit` re-runs the same method with the same options on another design (new responses,
    a profile's fixed parameter); it is supplied by `glmmbayes.fit()`, so this module never
    reaches into the methods.
    """

    method: str
    options: Mapping[str, Any]
    refit: Callable[[Design], "Fit"] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Fit:
    """A fitted GLMM: the design, the method's `Estimate` and the builder's verdict.

    `estimate_kind` says what the point estimates are: "ml" (maximum likelihood), "mode"
    (joint/posterior mode), "mean" (posterior mean) or "pql" (quasi-likelihood).
    """

    design: Design
    estimate: Estimate = field(repr=False)
    converged: bool
    messages: tuple[str, ...]
    seconds: float
    call: FitCall | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- the estimate
    @property
    def spec(self) -> "Spec":
        """The `Spec` the model was fitted from."""
        return self.design.spec

    @property
    def method(self) -> str:
        """The method that produced the fit: "laplace", "nagq0", "agq", "pql", "joint" or "hmc"."""
        return self.estimate.method

    @property
    def estimate_kind(self) -> str:
        """What the point estimates are: "ml", "mode", "mean" (posterior) or "pql"."""
        return self.estimate.estimate_kind

    @property
    def beta_hat(self) -> np.ndarray:
        """The fixed effects as an array (`fixef` is the named Series)."""
        return self.estimate.beta

    @property
    def vcov_beta(self) -> np.ndarray:
        """Covariance of the fixed effects as an array (`vcov` is the named DataFrame)."""
        return self.estimate.vcov_beta

    @property
    def theta_hat(self) -> np.ndarray:
        """lme4's θ as an array (`theta` is the named Series)."""
        return self.estimate.theta

    @property
    def phi(self) -> float:
        """The dispersion: σ² for gaussian, 1/shape for Gamma, 1 for binomial and Poisson."""
        return self.estimate.phi

    @property
    def u(self) -> np.ndarray | None:
        """Spherical conditional modes (b = Λ(θ) u); None for non-normal random effects."""
        return self.estimate.u

    @property
    def u_condvar(self) -> tuple | None:
        """Conditional covariances of the spherical random effects u, one (nlevels, k, k) array
        per term; None where the method has none."""
        return self.estimate.u_condvar

    @property
    def loglik(self) -> float | None:
        """Fully normalized log-likelihood (None where the method has none: PQL, joint, hmc)."""
        return self.estimate.loglik

    @property
    def likelihood(self) -> str | None:
        """What `loglik` is: "laplace", "nagq0", "agq", "exact" (LMM, non-normal quadrature) or
        "reml"; None where there is none."""
        return self.estimate.likelihood

    @property
    def nAGQ(self) -> int | None:
        """Quadrature points per dimension of a likelihood fit (1: Laplace, 0: lme4's fast
        criterion); None for the other methods."""
        return self.estimate.nAGQ

    @property
    def reml_criterion(self) -> float | None:
        """The REML criterion at convergence (-2 × restricted log-likelihood, lme4's
        ``REMLcrit``) of a REML fit; None for an ML fit."""
        return self.estimate.reml_criterion

    @property
    def vcov_full(self) -> pd.DataFrame | None:
        """Covariance of every optimized parameter (θ, β[, log φ]) from the Hessian of the
        deviance; None where the method has none."""
        V = self.estimate.vcov_full
        if V is None:
            return None
        names = list(self.estimate.vcov_full_names or range(V.shape[0]))
        return pd.DataFrame(V, index=names, columns=names)

    @property
    def optimizer(self):
        """The optimizer's report (`glmmbayes.estimate.OptimizerReport`): stages, gradient,
        Hessian; None for sampled fits."""
        return self.estimate.optimizer

    @property
    def sampler(self):
        """The sampler's report (`glmmbayes.estimate.SamplerReport`) of an hmc fit."""
        return self.estimate.sampler

    @property
    def details(self):
        """The method's own typed record (AGQInfo, PQLInfo, JointInfo, ...)."""
        return self.estimate.details

    @functools.cached_property
    def idata(self):
        """ArviZ InferenceData for every fit (`to_inference_data()` with its defaults): an hmc
        fit's draws, or draws from the normal approximation at the estimate for the other
        methods (labelled in `.attrs["draws_are"]`)."""
        return self.to_inference_data()

    def to_inference_data(self, posterior_predictive: bool = False, draws: int = 1000, chains: int = 4,
                          seed: int | None = 0):
        """ArviZ InferenceData of this fit.

        hmc: the sampler's draws -- `posterior` holds the lme4-named, constrained quantities
        (beta, sd_<g>, cor_<g>, the dispersion, b_<g>), `unconstrained_posterior` the sampler's
        internal ones (beta_z, u_<g>), plus log_likelihood, sample_stats and observed_data; with
        posterior_predictive=True, a copy with y simulated at every draw (seeded by `seed`).
        Other methods: `chains` x `draws` independent draws (seeded) from the normal
        approximation at the estimate -- beta, log sd, atanh cor and log sigma jointly normal with
        the covariance from the Hessian of the deviance (variance parameters held at their
        estimates where the method gives no covariance: pql, joint, REML) -- under the same
        variable names, with observed_data and `attrs["draws_are"]` saying what they are.
        """
        from .inference.idata import approximate_idata, hmc_idata

        if self.sampler is not None:
            return hmc_idata(self, posterior_predictive, seed)
        if posterior_predictive:
            raise ValueError("posterior_predictive draws need a posterior (method='hmc'); "
                             "use fit.simulate() for the fitted model's predictive distribution")
        return approximate_idata(self, draws=draws, chains=chains, seed=seed)

    @property
    def posterior(self) -> pd.DataFrame | None:
        """Posterior summary table of an hmc fit (mean, median, sd, HDI, R-hat, ESS, MAP, ML)."""
        return None if self.sampler is None else self.sampler.summary

    @property
    def re_params(self) -> dict | None:
        """Parameters of a non-normal random-effect distribution (known and estimated)."""
        p = self.estimate.re_params
        return None if p is None else dict(p)

    # ---------------------------------------------------------------- parameters
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates named as lme4 names them (posterior means for hmc)."""
        return pd.Series(self.beta_hat, index=list(self.design.fixef_names), name="fixef")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects (lme4's vcov)."""
        nm = list(self.design.fixef_names)
        return pd.DataFrame(self.vcov_beta, index=nm, columns=nm)

    @property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects (posterior sds for hmc)."""
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=list(self.design.fixef_names), name="se")

    @property
    def theta(self) -> pd.Series:
        """lme4's θ: the relative (LMM) or absolute (GLMM) Cholesky factors, column-wise."""
        return pd.Series(self.theta_hat, index=list(self.design.theta_names), name="theta")

    @property
    def sigma(self) -> float:
        """Residual standard deviation (LMM) or sqrt(dispersion); 1 for binomial/poisson."""
        return math.sqrt(self.phi)

    @property
    def dispersion(self) -> dict[str, float]:
        """The family's dispersion parameter under its usual name: {"sigma": σ} (gaussian),
        {"shape": 1/φ} (Gamma), {"theta": θ} (NB2: glmer.nb's theta, glmmTMB's sigma),
        {"phi": φ} (NB1: glmmTMB's sigma); {} for binomial and Poisson."""
        disp = self.design.family.dispersion
        return {} if disp is None else {disp.name: float(disp.to_param(self.phi))}

    def re_covariances(self) -> list[np.ndarray]:
        """Covariance matrix of each term's random effects."""
        scale = self.design.family.re_scale(self.phi)
        return [scale * T @ T.T for T in self.design.structure.lambdas(self.theta_hat)]

    @property
    def varcorr(self) -> pd.DataFrame:
        """Like R's as.data.frame(VarCorr(fit)): grp, var1, var2, vcov, sdcor."""
        return varcorr_table(self.design, self.theta_hat, self.phi, self.estimate.re_params)

    # ---------------------------------------------------------------- random effects
    def _b_blocks(self) -> list[np.ndarray]:
        if self.estimate.ranef is not None:
            return list(self.estimate.ranef)
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
        if self.estimate.ranef_condvar is not None:
            return {t.group_name: C for t, C in zip(self.design.terms, self.estimate.ranef_condvar)}
        scale = self.design.family.re_scale(self.phi)
        out = {}
        for t, T, C in zip(self.design.terms, self.design.structure.lambdas(self.theta_hat), self.u_condvar):
            out[t.group_name] = scale * np.einsum("ij,mjk,lk->mil", T, C, T)
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
        """Number of observations used (after ``na_action="omit"``)."""
        return self.design.n

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels of each grouping factor (lme4's ngrps)."""
        return self.design.ngrps

    @property
    def npar(self) -> int:
        """Number of estimated parameters (β, the variance parameters, an estimated dispersion)."""
        re = self.design.spec.re_dist
        nvar = len(re.estimated) if re is not None else len(self.theta_hat)
        return self.design.p + nvar + int(self.design.dispersion_estimated)

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom: `nobs` - `npar`."""
        return self.nobs - self.npar

    @property
    def deviance(self) -> float | None:
        """lme4's deviance(): -2 logLik for an ML LMM, the REML criterion for a REML fit, and the
        conditional deviance (sum of squared deviance residuals at the modes) for a GLMM."""
        fam = self.design.family
        if fam.is_lmm:
            return self.reml_criterion if self.reml_criterion is not None else (
                None if self.loglik is None else -2.0 * self.loglik)
        return float(np.sum(fam.unit_deviance(self.design.y, self.fitted_values(), self.design.wt, self.phi)))

    @property
    def aic(self) -> float | None:
        """Akaike's criterion -2 logLik + 2 npar (None without a log-likelihood)."""
        return None if self.loglik is None else -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float | None:
        """Schwarz's criterion -2 logLik + log(nobs) npar (None without a log-likelihood)."""
        return None if self.loglik is None else -2.0 * self.loglik + math.log(self.nobs) * self.npar

    # ---------------------------------------------------------------- fitted values
    def _re_part(self, codes_X, blocks) -> np.ndarray:
        out = np.zeros(self.design.n if codes_X is None else len(codes_X[0][0]))
        pairs = [(t.codes, t.X) for t in self.design.terms] if codes_X is None else codes_X
        for (codes, Xt), B in zip(pairs, blocks):
            out += np.einsum("ij,ij->i", Xt, B[codes])
        return out

    def linear_predictor(self) -> np.ndarray:
        """η = Xβ + offset + Zb at the estimates, one value per used row."""
        d = self.design
        return d.X @ self.beta_hat + d.offset + self._re_part(None, self._b_blocks())

    def fitted_values(self) -> np.ndarray:
        """Fitted means μ = g⁻¹(η) as an array (`fitted` is the indexed Series)."""
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
            r = (y - mu) * np.sqrt(wt / fam.variance(mu, self.phi))
        elif type == "working":
            r = (y - mu) / fam.mu_eta(eta)
        elif type == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(fam.unit_deviance(y, mu, wt, self.phi), 0.0))
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
            eta = d.new_fixed(newdata) @ self.beta_hat + d.new_offset(newdata)
            if not population:
                eta = eta + self._new_re_part(newdata, allow_new_levels)
        out = d.family.linkinv(eta) if type == "response" else eta
        index = d.row_index if newdata is None else newdata.index
        return pd.Series(out, index=index, name=f"predicted ({type})")

    def _new_re_part(self, newdata: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
        d = self.design
        out = np.zeros(len(newdata))
        for (codes, Xt), t, B in zip(d.new_terms(newdata), d.terms, self._b_blocks()):
            unseen = codes < 0
            if unseen.any() and not allow_new_levels:
                i = int(np.flatnonzero(unseen)[0])
                label = group_labels(t.group_vars, newdata)[i]
                raise DataError(
                    f"newdata row {i} has level '{label}' of '{t.group_name}', not seen in the fit "
                    f"({int(unseen.sum())} such row{'s' if unseen.sum() > 1 else ''}); pass "
                    "allow_new_levels=True to predict them at the population level"
                )
            contrib = np.einsum("ij,ij->i", Xt, B[np.maximum(codes, 0)])
            out += np.where(unseen, 0.0, contrib)
        return out

    def _new_b_blocks(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random effects drawn afresh from the fitted distribution, per term."""
        d = self.design
        re = d.spec.re_dist
        if re is not None:
            t = d.terms[0]
            return [re.simulate(rng, t.nlevels, self.estimate.re_params).reshape(t.nlevels, 1)]
        scale = math.sqrt(d.family.re_scale(self.phi))
        return [scale * rng.standard_normal((t.nlevels, t.k)) @ T.T
                for t, T in zip(d.terms, d.structure.lambdas(self.theta_hat))]

    def simulate(self, nsim: int = 1, seed: int | None = None, use_u: bool = False) -> pd.DataFrame:
        """Simulate responses from the fitted model (new random effects unless use_u), as lme4.

        Binomial responses are returned as counts of successes when the model has trials > 1.
        """
        rng = np.random.default_rng(seed)
        d = self.design
        base = d.X @ self.beta_hat + d.offset
        counts = d.family.dist.binary_response and np.any(d.wt > 1)
        out = {}
        for i in range(nsim):
            blocks = self._b_blocks() if use_u else self._new_b_blocks(rng)
            y = d.family.simulate(rng, base + self._re_part(None, blocks), d.wt, self.phi)
            out[f"sim_{i + 1}"] = np.round(y * d.wt) if counts else y
        return pd.DataFrame(out, index=d.row_index)

    # ---------------------------------------------------------------- after the fit
    def bootstrap(self, nsim: int = 500, seed: int | None = None, parallel: int | None = None,
                  client=None, progress: bool = True):
        """Parametric bootstrap (lme4's bootMer): refit the same spec by the same method on `nsim`
        responses simulated from this fit (new random effects). `seed` makes it reproducible,
        identically serially, in `parallel` local processes or on a Dask `client`.
        Returns a `glmmbayes.bootstrap.BootstrapResult` (replicates, t0, bias, sd, confint)."""
        from .bootstrap import bootstrap

        return bootstrap(self, nsim=nsim, seed=seed, parallel=parallel, client=client, progress=progress)

    def laplace_adequacy(self, nAGQ: int = 25, **kw) -> pd.DataFrame:
        """Per-cluster Laplace vs AGQ(nAGQ) log-integrals at this fit's parameters, with advice on
        nAGQ in `.attrs["summary"]` / `.attrs["advice"]` (see glmmbayes.adequacy)."""
        from .adequacy import laplace_adequacy

        return laplace_adequacy(self, nAGQ=nAGQ, **kw)

    # ---------------------------------------------------------------- inference
    @property
    def name_map(self) -> pd.DataFrame:
        """lme4's names of the variance parameters (`.sig01`, ..., `.sigma`, as in `confint` and
        `profile`) against the rows of `varcorr`: columns grp, var1, var2, kind ("sd"/"cor"),
        lme4_newname."""
        from .inference.params import name_map

        return name_map(self.design)

    def confint(self, method: str = "profile", level: float = 0.95, parm=None, **kw) -> pd.DataFrame:
        """Confidence intervals like lme4's confint.merMod (a DataFrame).

        method: "profile" (default, as lme4: where the profile ζ crosses ±z; see `profile`),
        "wald" (β ± z SE; NaN for variance parameters, as lme4) or "boot" (percentile or basic
        intervals of the parametric bootstrap, `fit.bootstrap`; keywords nsim=500, seed,
        boot_type="perc"|"basic" and the bootstrap's own options). progress=False silences the
        progress bar of the profiles and of the bootstrap.
        parm: None (all), names, positions, or lme4's "theta_" / "beta_".
        Rows: `.sig01`, ... (sd and cor of each term, getME(m, "theta") order; `name_map` ties
        them to `varcorr`), `.sigma` (residual sd, LMMs), then the fixed effects. Columns
        `lower`, `upper`; lme4's headers ("2.5 %", "97.5 %") are in `.attrs["labels"]`, with
        `.attrs["level"]`, `.attrs["method"]` and `.attrs["name_map"]`. A REML fit's profile is
        that of its ML refit (as lme4). Refused for hmc fits (posterior intervals instead) and,
        for profiles, for fits without a likelihood (pql, joint).
        """
        from .inference.confint import confint

        return confint(self, method, level, parm, **kw)

    def profile(self, parm=None, alphamax: float = 0.01, maxpts: int = 100, progress: bool = True):
        """ζ profiles like lme4's profile.merMod: for each parameter, ζ = sign(x - x̂)
        sqrt(D(x) - D̂) with every other parameter re-optimized (variance parameters on the
        sd/cor scale). Steps of ζ about 1/8 of sqrt(χ²_{npar}(1 - alphamax)) until that cutoff.
        Returns a `glmmbayes.inference.profile.Profile` (`.table`, `.zeta(name)`, `.plot()`,
        `.confint(level)`). progress: a bar over the parameters when profiling takes longer than
        half a second."""
        from .inference.profile import profile_fit

        return profile_fit(self, parm=parm, alphamax=alphamax, maxpts=maxpts, progress=progress)

    def summary(self) -> str:
        """The text summary that ``print(fit)`` shows, laid out as lme4's ``summary()``."""
        from .report import fit_summary

        return fit_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str | None:
        """Notebook display: model, fixed effects, variance components and the verdict (HTML)."""
        return display.html(self)

    def __repr__(self) -> str:
        ll = "NA" if self.loglik is None else f"{self.loglik:.4f}"
        return f"<Fit {self.method} {self.spec.formula!r} logLik={ll} converged={self.converged}>"
