"""Invariance under reparameterization of a variance component (ML, posterior mean) and its
failure for the posterior mode."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import glmmbayes as gb
from glmmbayes.invariance import variance_component_invariance


@pytest.fixture(scope="module")
def result():
    return variance_component_invariance(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", gb.datasets.load("cbpp"), n_grid=161, family="binomial"
    )


def test_ml_is_equivariant(result):
    t = result.table
    assert np.allclose(t["ml_as_sd"], t["ml_as_sd"].iloc[0], rtol=1e-12)
    # the grid maximum of the profile likelihood is the ML sd (to the grid resolution)
    assert abs(t["grid_argmax_lik_as_sd"].iloc[0] / t["ml_as_sd"].iloc[0] - 1) < 0.02


def test_posterior_mean_of_a_fixed_quantity_is_invariant(result):
    m = result.table["posterior_mean_of_sd"]
    assert np.max(np.abs(m - m.iloc[0])) < 2e-3 * m.iloc[0]


def test_posterior_mode_moves_with_the_scale(result):
    t = result.table.set_index("scale")["posterior_mode_as_sd"]
    # the Jacobian |dσ/dψ| = σ (log), 1/(2σ) (variance), σ³/2 (precision) shifts the mode
    assert t["log_sd"] > t["sd"] > t["variance"]
    assert t["precision"] > t["log_sd"]
    assert t.max() - t.min() > 0.1


def test_mean_and_mode_agree_with_the_grid_density(result):
    g = result.grid
    sig, lp = g["sigma"].to_numpy(), g["log_posterior"].to_numpy()
    assert result.table.set_index("scale").loc["sd", "posterior_mode_as_sd"] == sig[np.argmax(lp)]


def test_plot(result):
    fig = result.plot()
    assert len(fig.axes) == 4


def test_needs_a_scalar_term():
    d = gb.datasets.load("Contraception", derived=True)
    with pytest.raises(gb.SpecError, match="coefficients"):
        variance_component_invariance("use ~ urban + (urban | district)", d, group="district", family="binomial")
