"""Link functions g(mu) = eta with the derivatives the Laplace approximation needs: mu'(eta)
and the first two derivatives of log|mu'(eta)| (the observed information and its derivative)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special

from .ops import NUMPY

_LOG_2PI = math.log(2.0 * math.pi)




@dataclass(frozen=True)
class Link:
    """A link g: g(mu) = eta, with its inverse, d mu / d eta and stable log mu, log(1 - mu)."""

    name: str
    linkfun: Callable
    linkinv: Callable
    mu_eta: Callable
    dlog_mu_eta: Callable  # a = d log|mu_eta| / d eta (numpy): the second derivative of mu is mu_eta a
    d2log_mu_eta: Callable  # da/deta (numpy): the third derivative of mu is mu_eta (a^2 + da/deta)
    log_mu: Callable | None = None  # log(linkinv(eta)), stable, if the link has a closed form
    log1m_mu: Callable | None = None  # log(1 - linkinv(eta)) for links onto (0, 1)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


def _cloglog_log_mu(eta, ops):
    return ops.log(-ops.expm1(-ops.exp(eta)))


LINKS: dict[str, Link] = {
    "logit": Link(
        "logit",
        linkfun=lambda mu, ops=NUMPY: ops.log(mu) - ops.log1p(-mu),
        linkinv=lambda eta, ops=NUMPY: ops.expit(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.expit(eta) * ops.expit(-eta),
        dlog_mu_eta=lambda eta: 1.0 - 2.0 * NUMPY.expit(eta),
        d2log_mu_eta=lambda eta: -2.0 * NUMPY.expit(eta) * NUMPY.expit(-eta),
        log_mu=lambda eta, ops=NUMPY: ops.log_expit(eta),
        log1m_mu=lambda eta, ops=NUMPY: ops.log_expit(-eta),
    ),
    "probit": Link(
        "probit",
        linkfun=lambda mu, ops=NUMPY: special.ndtri(mu),
        linkinv=lambda eta, ops=NUMPY: ops.ndtr(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(-0.5 * eta * eta - 0.5 * _LOG_2PI),
        dlog_mu_eta=lambda eta: -eta,
        d2log_mu_eta=lambda eta: -np.ones_like(eta),
        log_mu=lambda eta, ops=NUMPY: ops.log_ndtr(eta),
        log1m_mu=lambda eta, ops=NUMPY: ops.log_ndtr(-eta),
    ),
    "cloglog": Link(
        "cloglog",
        linkfun=lambda mu, ops=NUMPY: ops.log(-ops.log1p(-mu)),
        linkinv=lambda eta, ops=NUMPY: -ops.expm1(-ops.exp(eta)),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(eta - ops.exp(eta)),
        dlog_mu_eta=lambda eta: 1.0 - np.exp(eta),
        d2log_mu_eta=lambda eta: -np.exp(eta),
        log_mu=lambda eta, ops=NUMPY: _cloglog_log_mu(eta, ops),
        log1m_mu=lambda eta, ops=NUMPY: -ops.exp(eta),
    ),
    "log": Link(
        "log",
        linkfun=lambda mu, ops=NUMPY: ops.log(mu),
        linkinv=lambda eta, ops=NUMPY: ops.exp(eta),
        mu_eta=lambda eta, ops=NUMPY: ops.exp(eta),
        dlog_mu_eta=lambda eta: np.ones_like(eta),
        d2log_mu_eta=lambda eta: np.zeros_like(eta),
        log_mu=lambda eta, ops=NUMPY: eta,
    ),
    "identity": Link(
        "identity",
        linkfun=lambda mu, ops=NUMPY: mu,
        linkinv=lambda eta, ops=NUMPY: eta,
        mu_eta=lambda eta, ops=NUMPY: 1.0 + 0.0 * eta,
        dlog_mu_eta=lambda eta: np.zeros_like(eta),
        d2log_mu_eta=lambda eta: np.zeros_like(eta),
    ),
    "inverse": Link(
        "inverse",
        linkfun=lambda mu, ops=NUMPY: 1.0 / mu,
        linkinv=lambda eta, ops=NUMPY: 1.0 / eta,
        mu_eta=lambda eta, ops=NUMPY: -1.0 / (eta * eta),
        dlog_mu_eta=lambda eta: -2.0 / eta,
        d2log_mu_eta=lambda eta: 2.0 / (eta * eta),
        log_mu=lambda eta, ops=NUMPY: -ops.log(eta),
    ),
}
