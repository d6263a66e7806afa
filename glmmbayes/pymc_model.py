"""The PyMC model of a Design: `to_pymc(spec, data, priors=None) -> pm.Model`.

Built from the same `Design` as every other method (never a second formula parser), with

- fixed effects sampled on an internal affine basis β = shift + B z (B from a QR decomposition of
  the centred X, or from the Cholesky factor of the ML covariance when `hmc.fit` has one), so the
  sampler sees roughly uncorrelated, unit-scale coordinates; ``beta`` is recorded on the user's
  scale (a Deterministic with dims ``fixef``). The prior is placed on β (through the centring
  matrix C, see `glmmbayes.priors`): for normal priors z gets the exactly implied MvNormal;
  otherwise z is Flat and the prior on C β enters as a Potential (the density of z then differs by
  the constant log|det CB|, which changes nothing).
- random effects non-centred, b = Λ u with u ~ N(0, I): per term ``u_<group>`` (dims
  ``<group>, <group>_coef``), ``sd_<group>``, and for vector-valued terms ``chol_<group>`` from
  `pm.LKJCholeskyCov` with ``cor_<group>``; ``b_<group>`` = the random effects (Deterministic).
  A non-normal random effect is ``u_<group>`` or ``w_<group>`` (see `build_model`), its estimated
  parameters ``re_<name>``; ``b_<group>`` is again the effect as it enters η.
- the likelihood from the shared family table (`Family.loglik` with PyTensor ops) with the
  design's response, prior weights / binomial trials and offset, exactly as the ML fit uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .design import Design, build_design
from .priors import Prior, Priors, centering_matrix, resolve_priors
from .spec import as_spec


@dataclass(frozen=True)
class Basis:
    """β = shift + B z: the coordinates z the sampler moves in."""

    shift: np.ndarray
    B: np.ndarray
    kind: str  # "qr" or "ml"


@dataclass(frozen=True)
class ModelInfo:
    design: Design
    priors: Priors
    basis: Basis
    C: np.ndarray  # γ = C β: the basis the fixed-effect priors are on


def qr_basis(design: Design, C: np.ndarray) -> Basis:
    """B = C⁻¹ R*⁻¹ with X C⁻¹ = Q R (centred X) and R* = R / sqrt(n - 1) (Stan's QR trick)."""
    p = design.p
    if p == 0:
        return Basis(np.zeros(0), np.zeros((0, 0)), "qr")
    Xc = design.X @ np.linalg.inv(C)
    R = np.linalg.qr(Xc, mode="r")
    R = R * np.sign(np.diag(R))[:, None]
    R = R / np.sqrt(max(design.n - 1, 1))
    B = np.linalg.solve(C, np.linalg.inv(R))
    return Basis(np.zeros(p), B, "qr")


def ml_basis(beta: np.ndarray, vcov: np.ndarray) -> Basis | None:
    """β = β̂ + chol(V) z: z is close to N(0, I) under the posterior when the ML normal approximation
    is good; None when V is not a usable covariance."""
    try:
        if not np.all(np.isfinite(vcov)):
            return None
        L = np.linalg.cholesky(0.5 * (vcov + vcov.T))
    except np.linalg.LinAlgError:
        return None
    return Basis(np.asarray(beta, float).copy(), L, "ml")


def coords(design: Design) -> dict[str, list]:
    c: dict[str, list] = {"fixef": list(design.fixef_names), "fixef_basis": [f"z{j}" for j in range(design.p)],
                          "obs": [int(r) for r in design.rows]}
    for t in design.terms:
        c[t.group_name] = list(t.levels)
        c[f"{t.group_name}_coef"] = list(t.coef_names)
        if t.k > 1:
            c[f"{t.group_name}_coef2"] = list(t.coef_names)
    return c


def _vector_dist(priors: list[Prior]):
    """One PyMC .dist with vector parameters for a term's sds (all of one distribution)."""
    import pymc as pm

    kinds = {p.dist for p in priors}
    if len(kinds) != 1:
        raise ValueError(f"the sds of one vector-valued term need priors of one kind, got {sorted(kinds)}")
    d = priors[0].dist
    names = list(priors[0].kwargs)
    kw = {nm: np.array([p.kwargs[nm] for p in priors]) for nm in names}
    cls = {"half_normal": pm.HalfNormal, "half_student_t": pm.HalfStudentT, "half_cauchy": pm.HalfCauchy,
           "exponential": pm.Exponential, "gamma": pm.Gamma}[d]
    return cls.dist(**kw, shape=len(priors))


def _normal_terms(design: Design, priors: Priors):
    """The non-centred normal random effects b = Λu of every term; their contribution to η."""
    import pymc as pm
    import pytensor.tensor as pt

    eta = 0.0
    for t in design.terms:
        g = t.group_name
        sdp = [priors.sd[(g, c)] for c in t.coef_names]
        u = pm.Normal(f"u_{g}", 0.0, 1.0, dims=(g, f"{g}_coef"))
        if t.k == 1:
            sd = sdp[0].pymc(f"sd_{g}", dims=f"{g}_coef")
            b = u * sd[None, :]
        else:
            chol, corr, sds = pm.LKJCholeskyCov(
                f"chol_{g}", n=t.k, eta=np.float64(priors.cor[g].kwargs["eta"]), sd_dist=_vector_dist(sdp),
                compute_corr=True)
            pm.Deterministic(f"sd_{g}", sds, dims=f"{g}_coef")
            pm.Deterministic(f"cor_{g}", corr, dims=(f"{g}_coef", f"{g}_coef2"))
            b = pt.dot(u, chol.T)
        b = pm.Deterministic(f"b_{g}", b, dims=(g, f"{g}_coef"))
        rows = b[t.codes]
        if t.k == 1:
            eta = eta + (rows[:, 0] if np.all(t.X[:, 0] == 1.0) else rows[:, 0] * t.X[:, 0])
        else:
            eta = eta + pt.sum(rows * t.X, axis=1)
    return eta


def nonnormal_variable(design: Design, parameterization: str) -> str:
    """Name of the sampled random-effect variable: u_<group> (the latent u as declared) or
    w_<group> (w = h(u)); positive ones are sampled as log_<name>."""
    return f"{'u' if parameterization == 'u' else 'w'}_{design.terms[0].group_name}"


def _nonnormal_term(design: Design, priors: Priors, parameterization: str, ops):
    """A non-normal random effect in parameterization "u" (density f_u, entering as h(u)) or
    "w" (w = h(u) with density f_u(h⁻¹(w)) |dh⁻¹/dw|): the same posterior for β, different modes.
    Positive effects are sampled on the log scale with the Jacobian added."""
    import pymc as pm
    import pytensor.tensor as pt

    re = design.spec.re_dist
    t = design.terms[0]
    g = t.group_name
    pv: dict[str, Any] = dict(re.known)
    for nm in re.estimated:
        pv[nm] = priors.re_params[nm].pymc(f"re_{nm}")
    name = nonnormal_variable(design, parameterization)
    if re.support == "positive":
        logv = pm.Flat(f"log_{name}", dims=g)
        v = pm.Deterministic(name, pt.exp(logv), dims=g)
        logjac = logv
    else:
        v = pm.Flat(name, dims=g)
        logjac = 0.0
    if parameterization == "u":
        dens, w = re.logpdf(v, pv, ops), re.entry_fn(v, ops)
    else:
        dens, w = re.logpdf_entry(v, pv, ops), v
    pm.Potential(f"{name}_density", pt.sum(dens + logjac))
    pm.Deterministic(f"b_{g}", w[:, None], dims=(g, f"{g}_coef"))
    return t.X[:, 0] * w[t.codes]


def build_model(design: Design, priors: Priors | Mapping[str, Any] | None = None, basis: Basis | None = None,
                parameterization: str = "u"):
    """(pm.Model, ModelInfo) for a design. `basis` defaults to the QR basis of the centred X;
    `parameterization` ("u" or "w") applies to a non-normal random effect."""
    import pymc as pm
    import pytensor.tensor as pt

    from .families import pytensor_ops

    if not isinstance(priors, Priors):
        priors = resolve_priors(design, priors if priors is not None else design.spec.priors)
    C = centering_matrix(design, priors)
    if basis is None:
        basis = qr_basis(design, C)
    fam = design.family
    ops = pytensor_ops()
    p = design.p
    names = list(design.fixef_names)

    with pm.Model(coords=coords(design)) as model:
        eta = pt.as_tensor_variable(design.offset + (design.X @ basis.shift if p else 0.0))
        if p:
            M = C @ basis.B  # γ = C shift + M z
            gshift = C @ basis.shift
            fp = [priors.fixef[nm] for nm in names]
            if all(q.dist == "normal" for q in fp):
                m = np.array([q.kwargs["mu"] for q in fp])
                s = np.array([q.kwargs["sigma"] for q in fp])
                S = np.linalg.solve(M, np.diag(s))
                Lz = np.linalg.cholesky(S @ S.T)
                z = pm.MvNormal("beta_z", mu=np.linalg.solve(M, m - gshift), chol=Lz, dims="fixef_basis")
            else:
                z = pm.Flat("beta_z", dims="fixef_basis")
                gamma = gshift + pt.dot(M, z)
                terms = [pm.logp(q.pymc_dist(), gamma[j]) for j, q in enumerate(fp) if q.dist != "flat"]
                if terms:
                    pm.Potential("fixef_prior", pt.sum(pt.stack(terms)))
            pm.Deterministic("beta", basis.shift + pt.dot(basis.B, z), dims="fixef")
            eta = eta + pt.dot(design.X @ basis.B, z)
        if design.spec.re_dist is not None:
            eta = eta + _nonnormal_term(design, priors, parameterization, ops)
        else:
            eta = eta + _normal_terms(design, priors)
        disp = fam.dispersion
        if disp is not None and disp.name in priors.dispersion:
            phi = disp.from_param(priors.dispersion[disp.name].pymc(disp.name))
        else:
            phi = pt.constant(design.fixed_phi)
        wt = design.wt

        def logp(value, eta, phi):
            return fam.loglik(value, eta, wt, phi, ops=ops)

        def random(eta, phi, rng=None, size=None):
            return fam.simulate(rng, np.asarray(eta), wt, float(phi))

        pm.CustomDist("y", eta, phi, logp=logp, random=random, observed=design.y, dims="obs")
    return model, ModelInfo(design, priors, basis, C)


def to_pymc(spec, data, priors: Mapping[str, Any] | None = None, parameterization: str = "u"):
    """The PyMC model of `spec` on `data` (a `glmmbayes.Spec` or a formula string); for a
    non-normal random effect in `parameterization` "u" or "w".

    Priors default to `spec.priors`, then to the documented defaults (docs/priors.md); the
    resolved priors are on ``model.glmm_priors`` (print it to see them).
    """
    design = build_design(as_spec(spec), data)
    model, info = build_model(design, priors, parameterization=parameterization)
    model.glmm_info = info
    model.glmm_priors = info.priors
    return model
