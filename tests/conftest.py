import json
from pathlib import Path

import pandas as pd
import pytest

import glmmbayes as gb

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
