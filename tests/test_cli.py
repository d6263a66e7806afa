"""The command line: data in and out, JSON against the Python API and lme4/glmmTMB, exit codes and
named errors, the HTML report opened in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb
from glmmbayes import datafiles
from glmmbayes.cli import main
from glmmbayes.errors import FitError
from tests.conftest import load_reference
from tests.tolerances import FIXEF_REL, LOGLIK_ABS, SDCOR_ABS, SE_REL

ROOT = Path(__file__).resolve().parents[1]
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.path.exists(p)), None)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_module(*args, timeout=600) -> subprocess.CompletedProcess:
    """`python -m glmmbayes ...` in a fresh process, as a shell script would run it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "glmmbayes", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def cbpp_files(tmp_path_factory):
    """cbpp written by the CLI itself: the CSV and its factor levels."""
    d = tmp_path_factory.mktemp("cbpp")
    assert main(["datasets", "cbpp", "--out", str(d / "cbpp.csv"), "--levels-out", str(d / "levels.json")]) == 0
    return d / "cbpp.csv", d / "levels.json"


def _close(ours: dict, ref: dict, rel: float):
    for k, v in ref.items():
        assert abs(ours[k] - v) <= rel * max(abs(v), 1.0), (k, ours[k], v)


# ------------------------------------------------------------------------ data sets


def test_datasets_export_round_trip(cbpp_files):
    csv, levels = cbpp_files
    back = datafiles.apply_factors(pd.read_csv(csv), levels=datafiles.read_levels_json(levels))
    orig = gb.datasets.load("cbpp")
    pd.testing.assert_frame_equal(back, orig, check_dtype=False, check_categorical=True)
    assert list(back["period"].cat.categories) == ["1", "2", "3", "4"]


def test_datasets_lists_every_data_set(capsys):
    code, out, _ = cli(capsys, "datasets")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == list(gb.datasets.names())
    code, out, _ = cli(capsys, "datasets", "cbpp")
    assert code == 0 and out.strip() == gb.datasets.describe("cbpp")


def test_parquet_and_feather_input_match_csv(cbpp_files, tmp_path):
    frame = gb.datasets.load("cbpp")
    for ext in ("parquet", "feather"):
        path = datafiles.write_table(frame, tmp_path / f"cbpp.{ext}")
        back = datafiles.read_table(path)
        pd.testing.assert_frame_equal(back, frame)  # these formats keep the factor levels


# ------------------------------------------------------------------------ fit and JSON


def test_fit_json_matches_python_api_and_references(capsys, cbpp_files, tmp_path):
    csv, levels = cbpp_files
    out = tmp_path / "fit.json"
    code, stdout, _ = cli(capsys, "fit", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels,
                          "--json", out)
    assert code == 0
    assert "Fixed effects:" in stdout and "period4" in stdout
    doc = json.loads(out.read_text())
    assert doc["model"] == {"formula": CBPP, "family": "binomial", "link": "logit", "REML": False,
                            "weights": None, "offset": None}
    assert doc["data"]["nobs"] == 56 and doc["data"]["ngrps"] == {"herd": 15}
    assert doc["command"].startswith("glmmbayes fit ") and doc["errors"] == {}
    lap = doc["methods"]["laplace"]
    api = gb.fit(CBPP, gb.datasets.load("cbpp"), family="binomial")
    # the CLI is the Python API: the same numbers
    np.testing.assert_allclose(pd.Series(lap["fixef"]), api.fixef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pd.Series(lap["se"]), api.se, rtol=1e-10)
    assert lap["logLik"] == pytest.approx(api.loglik, abs=1e-10)
    assert lap["varcorr"][0]["sdcor"] == pytest.approx(api.varcorr["sdcor"][0], abs=1e-12)
    assert lap["converged"] is True and lap["messages"] == list(api.messages)
    # and lme4/glmmTMB's numbers (tests/reference/cbpp_herd.json)
    ref = load_reference("cbpp_herd")
    _close(lap["fixef"], ref["glmmtmb"]["fixef"], FIXEF_REL)
    _close(lap["se"], ref["laplace"]["se"], SE_REL)
    assert lap["varcorr"][0]["sdcor"] == pytest.approx(ref["laplace"]["varcorr"][0]["sdcor"], abs=SDCOR_ABS)
    assert lap["logLik"] >= max(ref["laplace"]["logLik"], ref["glmmtmb"]["logLik"]) - LOGLIK_ABS


def test_fit_with_several_methods_and_levels_option(capsys, cbpp_files, tmp_path):
    csv, _ = cbpp_files
    out = tmp_path / "cmp.json"
    code, stdout, err = cli(capsys, "fit", csv, "-f", CBPP, "--family", "binomial", "--levels", "period=1,2,3,4",
                            "--methods", "pql,laplace,agq", "--nAGQ", 25, "--json", out, "-q")
    assert code == 0 and stdout == ""
    doc = json.loads(out.read_text())
    assert list(doc["methods"]) == ["pql", "laplace", "agq"]
    ref = load_reference("cbpp_herd")
    _close(doc["methods"]["agq"]["fixef"], ref["agq25"]["fixef"], FIXEF_REL)
    _close(doc["methods"]["agq"]["se"], ref["agq25"]["se"], SE_REL)
    _close(doc["methods"]["pql"]["fixef"], ref["pql"]["fixef"], FIXEF_REL)  # glmmPQL
    assert doc["methods"]["pql"]["logLik"] is None  # PQL has no likelihood
    for m in doc["methods"].values():
        assert isinstance(m["messages"], list) and m["converged"] is True


# ------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("args, name, culprit", [
    (["-f", CBPP.replace("period +", "perio +"), "--family", "binomial"], "DataError", "perio"),
    (["-f", CBPP, "--family", "binomil"], "FamilyError", "binomil"),
    (["-f", CBPP, "--family", "binomial", "--levels", "period=1,2,3"], "DataError", "period"),
    (["-f", CBPP, "--family", "binomial", "--levels", "perio=1,2"], "DataError", "perio"),
    (["-f", CBPP, "--family", "binomial", "--draws", "10"], "SpecError", "--draws"),
    (["-f", CBPP, "--family", "binomial", "--method", "nonsense"], "SpecError", "nonsense"),
    (["-f", "cbind(incidence, size - incidence) ~ period + (1 | herd", "--family", "binomial"], "FormulaError", "^"),
])
def test_bad_input_exits_2_with_the_named_error(capsys, cbpp_files, args, name, culprit):
    csv, levels = cbpp_files
    code, out, err = cli(capsys, "fit", csv, "--levels-json", levels, *args)
    assert code == 2
    assert f"glmmbayes: error: {name}: " in err and culprit in err
    assert "Traceback" not in err and out == ""


def test_missing_file_and_unknown_option_exit_2(capsys, tmp_path):
    code, _, err = cli(capsys, "fit", tmp_path / "none.csv", "-f", CBPP)
    assert code == 2 and "DataError" in err and "none.csv" in err
    code, _, err = cli(capsys, "fit", tmp_path / "none.xlsx", "-f", CBPP)
    assert code == 2 and "unknown format" in err
    code, _, err = cli(capsys, "fit", tmp_path / "none.csv", "-f", CBPP, "--bogus")
    assert code == 2 and "--bogus" in err


def test_python_m_reports_bad_input_without_traceback(cbpp_files):
    csv, _ = cbpp_files
    p = run_module("fit", csv, "-f", CBPP.replace("period +", "perio +"), "--family", "binomial")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().startswith("glmmbayes: error: DataError:") and "'perio'" in p.stderr
    assert "Traceback" not in p.stderr


def test_fit_failure_exits_1(capsys, cbpp_files, monkeypatch):
    csv, levels = cbpp_files

    def failing(*a, **k):
        raise FitError("PIRLS did not converge at the starting values")

    monkeypatch.setattr(gb.api, "fit", failing)
    code, _, err = cli(capsys, "fit", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels)
    assert code == 1 and "FitError: PIRLS did not converge" in err
    monkeypatch.setattr(sys.modules["glmmbayes.compare"], "fit", failing)
    code, out, err = cli(capsys, "compare", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels,
                         "--methods", "laplace", "-q")
    assert code == 1 and "method laplace failed: FitError" in err


def test_strict_exits_4_when_a_fit_did_not_converge(capsys, cbpp_files, monkeypatch):
    csv, levels = cbpp_files
    real = gb.api.fit
    monkeypatch.setattr(gb.api, "fit", lambda *a, **k: dataclasses.replace(real(*a, **k), converged=False))
    args = ["fit", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels, "-q"]
    assert cli(capsys, *args)[0] == 0
    assert cli(capsys, *args, "--strict")[0] == 4


def test_study_subcommand_help(capsys):
    code, out, _ = cli(capsys, "study", "--help")
    assert code == 0 and "--scheduler" in out and "--store" in out


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and gb.__version__ in out


# ------------------------------------------------------------------------ the report in a browser


def open_in_chromium(path: Path) -> dict:
    """Load a file in headless Chromium; what it logged, requested and shows."""
    from playwright import sync_api  # a dev dependency; the browser itself is a system package

    if CHROMIUM is None:
        pytest.skip("no Chromium binary on this system (Debian: apt-get install chromium; .ci/run installs it)")
    seen = {"console": [], "page_errors": [], "requests": []}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: seen["console"].append((m.type, m.text)))
        page.on("pageerror", lambda e: seen["page_errors"].append(str(e)))
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        seen["estimate_rows"] = page.eval_on_selector_all("table#estimates tbody tr", "rs => rs.map(r => r.innerText)")
        seen["estimate_methods"] = page.eval_on_selector_all("table#estimates thead th", "hs => hs.map(h => h.innerText)")
        seen["images"] = page.eval_on_selector_all(
            "img", "is => is.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        browser.close()
    return seen


def check_report_page(seen: dict, methods: list[str]) -> None:
    assert [c for c in seen["console"] if c[0] in ("error", "warning")] == []
    assert seen["page_errors"] == []
    external = [u for u in seen["requests"] if not u.startswith(("file:", "data:"))]
    assert external == [], external
    assert seen["estimate_methods"][-len(methods):] == methods
    assert any(r.startswith("fixef") and "period2" in r for r in seen["estimate_rows"])
    assert seen["images"] and all(ok and w > 100 and h > 100 for ok, w, h in seen["images"])


def test_report_opens_in_headless_chromium(capsys, cbpp_files, tmp_path):
    csv, levels = cbpp_files
    report = tmp_path / "report.html"
    code, _, _ = cli(capsys, "compare", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels,
                     "--methods", "pql,laplace,agq", "--report", report, "-q")
    assert code == 0
    html = report.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "glmmbayes compare " in html  # the command that made it
    check_report_page(open_in_chromium(report), ["pql", "laplace", "agq"])


@pytest.mark.slow
def test_cli_end_to_end_with_hmc_and_browser(cbpp_files, tmp_path):
    """compare pql, laplace, agq, hmc from a fresh process: JSON, report, quiet stderr."""
    csv, levels = cbpp_files
    report, out = tmp_path / "report.html", tmp_path / "out.json"
    p = run_module("compare", csv, "-f", CBPP, "--family", "binomial", "--levels-json", levels,
                   "--methods", "pql,laplace,agq,hmc", "--draws", 300, "--tune", 300, "--chains", 2, "--seed", 3,
                   "--report", report, "--json", out)
    assert p.returncode == 0, p.stderr
    for noise in ("QuadPotentialFullAdapt", "could not link to a BLAS", "Traceback"):
        assert noise not in p.stderr
    doc = json.loads(out.read_text())
    assert list(doc["methods"]) == ["pql", "laplace", "agq", "hmc"]
    hmc, lap = doc["methods"]["hmc"], doc["methods"]["laplace"]
    for k in lap["fixef"]:  # a flat-ish posterior's mean near the ML estimate, in posterior sds
        assert abs(hmc["fixef"][k] - lap["fixef"][k]) < 0.5 * hmc["se"][k]
    check_report_page(open_in_chromium(report), ["pql", "laplace", "agq", "hmc"])
