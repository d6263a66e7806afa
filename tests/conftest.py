import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmbayes as gb

REFERENCE = Path(__file__).parent / "reference"


def load_reference(case: str) -> dict:
    """lme4 / glmmTMB / glmmPQL results produced in R (see tests/reference/README.md)."""
    return json.loads((REFERENCE / f"{case}.json").read_text())


def reference_data(name: str) -> pd.DataFrame:
    """A shipped data set with the derived columns the reference R calls used."""
    d = gb.datasets.load(name)
    if name == "cbpp":
        lv = [str(i) for i in range(1, len(d) + 1)]
        d["obs"] = pd.Categorical(lv, categories=lv)  # R: obs = factor(1:nrow(cbpp))
    if name == "Contraception":
        # R: ch = factor(livch != "0", labels = c("N", "Y"))
        d["ch"] = pd.Categorical(np.where(d["livch"] != "0", "Y", "N"), categories=["N", "Y"])
    return d


@pytest.fixture
def cbpp():
    return reference_data("cbpp")


@pytest.fixture
def contraception():
    return reference_data("Contraception")
