"""Simulation studies: a declarative engine (`Study` -> `StudyResult`), resumable through a
Parquet store and scalable to a Dask cluster, with built-in studies (McCulloch's Table 1, a
nested binary study on the guImmun design)."""

from __future__ import annotations

from .builtin import (
    ESTIMATORS,
    FORMULA,
    GUIMMUN_BETA,
    GUIMMUN_FORMULA,
    guimmun_study,
    simulate_guimmun,
    MCCULLOCH_TABLE1,
    joint_u_expectation,
    normal_exponential_replicates,
    normal_exponential_study,
    normal_exponential_table,
    replicate_seed,
    simulate_normal_exponential,
)
from .engine import Study, default_quantities, default_replicate_seed, expand_grid, point_key
from .result import StudyResult
from .runfile import load_study, run_study_from_file

__all__ = [
    "Study", "StudyResult", "default_quantities", "default_replicate_seed", "expand_grid", "point_key",
    "load_study", "run_study_from_file",
    "normal_exponential_study", "normal_exponential_table", "normal_exponential_replicates",
    "simulate_normal_exponential", "replicate_seed", "joint_u_expectation", "MCCULLOCH_TABLE1",
    "ESTIMATORS", "FORMULA", "guimmun_study", "simulate_guimmun", "GUIMMUN_BETA", "GUIMMUN_FORMULA",
]
