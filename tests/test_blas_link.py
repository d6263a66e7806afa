"""PyTensor compiles against the OpenBLAS of the scipy wheel: no "could not link to a BLAS"
warning, correct products, and a user's own setting left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glmmbayes.blas_link import blas_ldflags, scipy_openblas

ROOT = Path(__file__).resolve().parents[1]
LIB = scipy_openblas()
needs_lib = pytest.mark.skipif(LIB is None or not sys.platform.startswith("linux"),
                               reason="no OpenBLAS bundled with scipy here (e.g. a conda scipy)")

COMPILE = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import glmmbayes
    import numpy as np, pytensor, pytensor.tensor as pt
    A, B, x, y = pt.matrix("A"), pt.matrix("B"), pt.vector("x"), pt.vector("y")
    f = pytensor.function([A, B, x, y], [A @ B, A @ x, pt.outer(x, y) + A])
    rng = np.random.default_rng(0)
    a, b, v, w = rng.random((6, 6)), rng.random((6, 6)), rng.random(6), rng.random(6)
    out = f(a, b, v, w)
ops = {type(n.op).__name__ for n in f.maker.fgraph.toposort()}
print("OPS", sorted(ops))
print("ERR", max(float(np.max(np.abs(o - e))) for o, e in zip(out, [a @ b, a @ v, np.outer(v, w) + a])))
print("WARN", [str(w.message)[:60] for w in caught if "BLAS" in str(w.message)])
print("FLAGS", pytensor.config.blas__ldflags[:40])
"""


def _python(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=600)


@needs_lib
def test_flags_rename_the_prefixed_symbols():
    flags = blas_ldflags(LIB)
    assert flags is not None and "-L" in flags and "-lscipy_openblas" in flags
    assert "-Ddgemm_=scipy_dgemm_" in flags and "-Ddgemv_=scipy_dgemv_" in flags


@needs_lib
def test_compile_uses_blas_without_warning():
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    p = subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True, timeout=600,
                       env=dict(env, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    assert "could not link to a BLAS" not in p.stderr and "NumPy C-API based implementation" not in p.stderr
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert lines["WARN"] == "[]" and lines["FLAGS"].startswith("-L")
    assert "Dot22" in lines["OPS"] and "CGemv" in lines["OPS"] and "CGer" in lines["OPS"]  # BLAS ops chosen
    assert float(lines["ERR"]) < 1e-12


def test_user_setting_is_left_alone():
    p = _python("import glmmbayes, os, pytensor; print(repr(pytensor.config.blas__ldflags)); "
                "print(os.environ['PYTENSOR_FLAGS'])", PYTENSOR_FLAGS="blas__ldflags=")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["''", "blas__ldflags="]
