"""Link PyTensor's compiled code to the OpenBLAS that the scipy wheel already ships.

PyTensor looks for a system BLAS the first time it compiles; a pip-installed stack has none on
the linker's path, so PyTensor warns "could not link to a BLAS installation" and runs its
matrix products without BLAS. scipy's wheel bundles OpenBLAS in ``scipy.libs`` with its
symbols prefixed ``scipy_`` (``scipy_dgemm_``): linking that library and renaming the Fortran
BLAS names with ``-D`` macros at compile time gives PyTensor a real BLAS, with no system
library. Nothing is changed when the user has configured ``blas__ldflags`` (PYTENSOR_FLAGS or
a .pytensorrc file), when PyTensor has already chosen its flags, off Linux, or when no such
library is found; numpy's copy is the 64-bit-integer (ILP64) build and cannot serve.
"""

from __future__ import annotations

import configparser
import ctypes
import glob
import os
import shlex
import shutil
import sys
from importlib.util import find_spec

# The Fortran BLAS routines (levels 1-3) under their standard names; only those the library
# exports are renamed.
_LEVEL1 = ("rotg_", "rotmg_", "rot_", "rotm_", "swap_", "scal_", "copy_", "axpy_", "dot_", "dotu_",
           "dotc_", "nrm2_", "asum_")
_LEVEL2 = ("gemv_", "gbmv_", "hemv_", "hbmv_", "hpmv_", "symv_", "sbmv_", "spmv_", "trmv_", "tbmv_",
           "tpmv_", "trsv_", "tbsv_", "tpsv_", "ger_", "geru_", "gerc_", "her_", "hpr_", "her2_", "hpr2_",
           "syr_", "spr_", "syr2_", "spr2_")
_LEVEL3 = ("gemm_", "symm_", "hemm_", "syrk_", "herk_", "syr2k_", "her2k_", "trmm_", "trsm_")
_EXTRA = ("xerbla_", "isamax_", "idamax_", "icamax_", "izamax_", "sdsdot_", "dsdot_", "scnrm2_", "dznrm2_",
          "scasum_", "dzasum_", "csscal_", "zdscal_")
ROUTINES = tuple(p + r for p in "sdcz" for r in _LEVEL1 + _LEVEL2 + _LEVEL3) + _EXTRA


def scipy_openblas() -> str | None:
    """Path of the LP64 OpenBLAS bundled with the scipy wheel (None when there is none)."""
    spec = find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = os.path.join(os.path.dirname(list(spec.submodule_search_locations)[0]), "scipy.libs")
    found = sorted(p for p in glob.glob(os.path.join(libs, "lib*openblas*.so"))
                   if "64_" not in os.path.basename(p))  # ILP64 builds take 64-bit integers
    return found[0] if found else None


def blas_ldflags(library: str) -> str | None:
    """PyTensor ``blas__ldflags`` for an OpenBLAS library file, or None if it exports no dgemm."""
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return None
    prefix = next((p for p in ("scipy_", "") if hasattr(lib, f"{p}dgemm_")), None)
    if prefix is None:
        return None
    name = os.path.basename(library)[3:].split(".so")[0]  # -l<name> finds lib<name>.so
    flags = [f"-L{os.path.dirname(library)}", f"-l{name}"]
    if prefix:
        flags += [f"-D{r}={prefix}{r}" for r in ROUTINES if hasattr(lib, prefix + r)]
    return " ".join(shlex.quote(f) for f in flags)


def _user_configured() -> bool:
    """blas__ldflags set in PYTENSOR_FLAGS or a PyTensor config file."""
    if "blas__ldflags" in os.environ.get("PYTENSOR_FLAGS", ""):
        return True
    files = os.environ.get("PYTENSORRC")
    paths = files.split(os.pathsep) if files else [os.path.expanduser("~/.pytensorrc"),
                                                    os.path.expanduser("~/.pytensorrc.txt")]
    cfg = configparser.ConfigParser()
    try:
        cfg.read([p for p in paths if os.path.isfile(p)])
    except configparser.Error:
        return True  # a file we cannot read: PyTensor's to interpret, not ours
    return cfg.has_option("blas", "ldflags") or cfg.has_option("global", "blas__ldflags")


def link_pytensor_blas() -> str | None:
    """Point PyTensor at scipy's OpenBLAS unless the user or PyTensor already chose; returns the
    flags set (None when nothing was changed).

    The flags go into PYTENSOR_FLAGS, so sampler processes started later inherit them, and into
    PyTensor's config when it is already imported but has not yet looked for a BLAS.
    """
    if not sys.platform.startswith("linux") or shutil.which("g++") is None or _user_configured():
        return None
    if "pytensor" in sys.modules:
        param = type(sys.modules["pytensor"].config).__dict__.get("blas__ldflags")
        if param is None or hasattr(param, "val"):
            return None  # PyTensor has already chosen its BLAS in this process
    library = scipy_openblas()
    flags = None if library is None else blas_ldflags(library)
    if flags is None:
        return None
    entry = 'blas__ldflags="' + flags.replace('"', '\\"') + '"'
    current = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = f"{current},{entry}" if current else entry
    if "pytensor" in sys.modules:
        sys.modules["pytensor"].config.blas__ldflags = flags
    return flags
