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


def test_variance_scale_reports_its_boundary_mode(result):
    """With a prior finite and non-zero at σ = 0, p(σ²) = p(σ)/(2σ) → ∞ as σ² → 0: the mode on
    the variance scale is the boundary, not the interior local maximum near σ̂."""
    t = result.table.set_index("scale")
    v = t.loc["variance"]
    assert bool(v["mode_at_boundary"]) and v["posterior_mode"] == 0.0 and v["posterior_mode_as_sd"] == 0.0
    assert v["mode_note"] == "mode at the boundary: density → ∞ as σ² → 0"
    assert v["boundary_exponent"] == pytest.approx(-1.0, abs=1e-3)  # the Jacobian 1/(2σ), prior flat at 0
    # the interior local maximum is still reported, apart, near the ML value
    assert abs(v["local_mode_as_sd"] / v["ml_as_sd"] - 1) < 0.05
    # on the other scales the density falls (log sd, precision) or stays finite (sd) towards σ = 0
    assert not t.loc[["sd", "log_sd", "precision"], "mode_at_boundary"].any()
    np.testing.assert_allclose(t.loc[["sd", "log_sd", "precision"], "boundary_exponent"], [0, 1, 3], atol=1e-3)
    assert "density → ∞ as σ² → 0" in str(result)


def test_equal_tailed_intervals_are_invariant_hdis_are_not(result):
    """Each scale's interval is computed from that scale's own density; mapped back to σ the
    equal-tailed ones agree (to the quadrature error of the grid), the HDIs do not."""
    t = result.table
    for col in ("eti_lower_as_sd", "eti_upper_as_sd"):
        assert np.max(np.abs(t[col] / t[col].iloc[0] - 1)) < 1e-3, t[col]
    assert t["hdi_lower_as_sd"].max() - t["hdi_lower_as_sd"].min() > 0.05
    assert t["hdi_upper_as_sd"].max() - t["hdi_upper_as_sd"].min() > 0.1
    # the variance scale's highest-density set reaches its unbounded boundary
    assert t.set_index("scale").loc["variance", "hdi_lower_as_sd"] == 0.0


def test_plot(result):
    fig = result.plot()
    assert len(fig.axes) == 4
    t = result.table.set_index("scale")
    for a, (scale, row) in zip(fig.axes, t.iterrows()):
        lo, hi = a.get_xlim()
        # the range comes from the posterior's quantiles on that scale, not from the grid
        assert lo <= row["eti_lower"] and hi >= row["eti_upper"] and hi < 3 * row["eti_upper"]
    legend = [x.get_text() for x in fig.axes[2].get_legend().get_texts()]
    assert "mode at the boundary: density → ∞ as σ² → 0" in legend


def test_needs_a_scalar_term():
    d = gb.datasets.load("Contraception", derived=True)
    with pytest.raises(gb.SpecError, match="coefficients"):
        variance_component_invariance("use ~ urban + (urban | district)", d, group="district", family="binomial")
