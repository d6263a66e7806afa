import json
from pathlib import Path

import os

import pandas as pd
import pytest
from hypothesis import settings

import glmmbayes as gb

# The property tests draw the same examples on every run, so that a test run (and CI) is
# reproducible; HYPOTHESIS_PROFILE=explore draws new ones, to hunt for failures.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REFERENCE = Path(__file__).parent / "reference"


def load_reference(case: str) -> dict:
    """lme4 / glmmTMB / glmmPQL results produced in R (see tests/reference/README.md)."""
    return json.loads((REFERENCE / f"{case}.json").read_text())


def reference_data(name: str) -> pd.DataFrame:
    """A shipped data set with the derived columns the reference R calls used."""
    return gb.datasets.load(name, derived=True)


@pytest.fixture
def cbpp():
    return reference_data("cbpp")


@pytest.fixture
def contraception():
    return reference_data("Contraception")
