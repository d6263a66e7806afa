"""glmmbayes: one GLMM specification, every estimation method, side by side."""

from .blas_link import link_pytensor_blas

link_pytensor_blas()  # before anything imports PyTensor: its compiled code uses scipy's OpenBLAS

from . import datasets
from .api import design, fit
from .compare import Comparison, compare
from .errors import (
    ConvergenceWarning,
    CostWarning,
    DataError,
    FamilyError,
    FitError,
    FormulaError,
    GlmmError,
    LaplaceAdequacyWarning,
    RankDeficiencyWarning,
    SpecError,
)
from .families import get_family
from .fit import Fit
from . import report as _text_report  # noqa: F401 -- loaded before `report` (the function) is bound,
from .html_report import report       # so a later submodule import cannot rebind glmmbayes.report
from .inference.anova import LRT, anova, lrt
from .pymc_model import to_pymc
from .spec import Spec
from .re_dist import RandomEffect
from .studies import Study, StudyResult
from .adequacy import laplace_adequacy
from . import studies  # simulation studies

__version__ = "0.1.0"

__all__ = [
    "Spec", "Fit", "fit", "compare", "anova", "lrt", "LRT", "Comparison", "report", "to_pymc", "design",
    "datasets", "get_family",
    "RandomEffect", "laplace_adequacy", "studies", "Study", "StudyResult",
    "GlmmError", "FormulaError", "DataError", "FamilyError", "SpecError",
    "ConvergenceWarning", "RankDeficiencyWarning", "LaplaceAdequacyWarning", "FitError", "CostWarning",
]
