"""The HTML report, the notebook displays, the forest plot's limits and compare's progress bar."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import glmmbayes as gb
from glmmbayes.compare import from_fits
from glmmbayes.errors import SpecError

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def fits():
    d = gb.datasets.load("cbpp")
    return {m: gb.fit(CBPP, d, family="binomial", method=m) for m in ("laplace", "agq")}


def test_report_of_a_fit_is_self_contained(fits, tmp_path):
    f = fits["laplace"]
    f.summary()  # loads glmmbayes.report (the text module): gb.report must stay the function
    path = gb.report(f, tmp_path / "fit.html", command="glmmbayes fit cbpp.csv")
    html = path.read_text()
    assert callable(gb.report) and path.exists()
    assert '<table id="estimates">' in html and 'src="data:image/png;base64,' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    for name, value in f.fixef.items():
        assert name in html and f"{value:.4g}" in html  # every estimate, as the table prints it
    assert "glmmbayes fit cbpp.csv" in html
    check, per_cluster = f.details.adequacy, f.laplace_adequacy().attrs["summary"]
    assert f"log-likelihood difference {check.difference:+.3g}" in html
    assert f"changes the log-likelihood by {per_cluster['total_difference']:+.3g}" in html
    assert f"{f.loglik:.4g}" in html


def test_report_of_a_comparison_has_every_method(fits):
    c = from_fits(fits)
    html = gb.report(c)
    head = re.search(r'<table id="estimates"><thead><tr>(.*?)</tr>', html).group(1)
    assert re.findall(r"<th>(\w+)</th>", head) == ["laplace", "agq"]
    assert html.count("converged</span>") == 2


def test_report_rejects_other_objects():
    with pytest.raises(SpecError, match="Fit or Comparison"):
        gb.report({"not": "a fit"})


def test_notebook_displays(fits):
    f = fits["laplace"]
    h = f._repr_html_()
    assert h.count("<table") == 2 and "period4" in h and "herd" in h
    assert "cbind(incidence, size - incidence)" in h and "&lt;" not in h.split("<table")[0][:0]
    c = from_fits(fits)
    h = c._repr_html_()
    assert "laplace" in h and "agq" in h and f"{f.fixef['period2']:.4g}" in h


def test_from_fits_matches_compare(fits):
    c1 = from_fits(fits)
    c2 = gb.compare(CBPP, gb.datasets.load("cbpp"), methods=["laplace", "agq"], family="binomial", progress=False)
    assert np.allclose(c1.wide().to_numpy(), c2.wide().to_numpy(), rtol=1e-10, equal_nan=True)


def test_forest_plot_keeps_every_marker_inside_its_panel(fits):
    fig = from_fits(fits).plot()
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines() if ln.get_marker() not in ("None", None, "")
                             and len(ln.get_xdata()) == 1])
        assert len(ys)
        assert hi - ys.max() >= 0.1 and ys.min() - lo >= 0.1, (ax.get_title(), lo, hi, ys)


def test_compare_progress_bar(capsys):
    d = gb.datasets.load("cbpp")
    gb.compare(CBPP, d, methods=["laplace"], family="binomial", progress=True)
    err = capsys.readouterr().err
    assert "compare" in err and "laplace" in err
    gb.compare(CBPP, d, methods=["laplace"], family="binomial", progress=False)
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == ""
