"""The documentation builds, names every public object, and the README example runs."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import glmmbayes

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.skipif(
    not (_have("mkdocs") and _have("pymdownx")),
    reason="mkdocs and pymdown-extensions are not installed (pip install -e '.[dev]')",
)
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    html = (site / "methods" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in html, "math was not processed by pymdownx.arithmatex"
    # every $$ block was converted (a stray $$ means an indentation or delimiter problem)
    text_outside_math = re.sub(r'<(span|div) class="arithmatex">.*?</\1>', "", html, flags=re.S)
    assert "$$" not in text_outside_math


def _in_code(name: str, text: str) -> bool:
    """`name` inside a code span or block of the markdown (as a whole word)."""
    fences = re.findall(r"^```.*?^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = fences + re.findall(r"`([^`\n]+)`", prose)
    pat = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
    return any(pat.search(s) for s in spans)


def test_api_reference_names_every_public_object():
    text = API.read_text(encoding="utf-8")
    missing = [nm for nm in glmmbayes.__all__ if not _in_code(nm, text)]
    assert not missing, f"docs/api.md does not document {missing} (in backticks)"


def test_api_reference_names_fit_attributes_and_datasets():
    text = API.read_text(encoding="utf-8")
    fit_public = [nm for nm in vars(glmmbayes.Fit) if not nm.startswith("_")]
    fit_public += [f.name for f in glmmbayes.Fit.__dataclass_fields__.values() if not f.name.startswith("_")]
    missing = sorted({nm for nm in fit_public if not _in_code(nm, text)})
    assert not missing, f"docs/api.md does not document Fit.{missing}"
    missing = [nm for nm in glmmbayes.datasets.__all__ if not _in_code(nm, text)]
    assert not missing, f"docs/api.md does not document datasets.{missing}"


def _readme_python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", readme, flags=re.S)


def test_readme_example_runs():
    blocks = _readme_python_blocks()
    assert blocks, "README.md has no ```python example"
    ns: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the example may warn (e.g. a singular fit); it must run
        for code in blocks:
            exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 -- our own README
    fit = ns.get("fit")
    assert isinstance(fit, glmmbayes.Fit), "the README example should leave its fit in `fit`"
    assert fit.nobs == 56 and fit.loglik is not None and fit.loglik < 0  # cbpp
