"""Example data sets from R (lme4, mlmRev, MASS, nlme, glmmTMB), shipped with the package.

>>> from glmmbayes import datasets
>>> datasets.names()
('bacteria', 'cbpp', 'Contraception', 'grouseticks', 'guImmun', 'InstEval', 'Oats', 'Owls', 'Salamanders', 'sleepstudy', 'VerbAgg')
>>> cbpp = datasets.load("cbpp")

Every R factor becomes a pandas ``Categorical`` with R's level order (``levels.json``);
other columns keep the numeric type read from the CSV export (whole numbers as int64).
The files live next to this module, so nothing outside the package is read.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from glmmbayes.errors import DataError

__all__ = ["load", "names", "describe"]

_NAMES: tuple[str, ...] = ("bacteria", "cbpp", "Contraception", "grouseticks", "guImmun", "InstEval", "Oats", "Owls",
                             "Salamanders", "sleepstudy", "VerbAgg")
_BY_LOWER = {n.lower(): n for n in _NAMES}

_DESCRIPTIONS = {
    "InstEval": (
        "InstEval (R package lme4): university lecture evaluations by students at ETH Zurich, "
        "73421 rows. Columns: s (factor, 2972 students), d (factor, 1128 lecturers), studage, "
        "lectage (factors, ordered in R), service (factor 0/1, lecture given for another "
        "department), dept (factor, 14 departments), y (int, rating 1-5). Typical crossed LMM: "
        "y ~ service + (1 | s) + (1 | d) + (1 | dept), REML."
    ),
    "Salamanders": (
        "Salamanders (R package glmmTMB): counts of salamanders of 7 species/life stages at 23 "
        "streams, some affected by mountaintop removal mining; 644 rows. Columns: site (factor, 23 "
        "streams), mined (factor yes/no), cover, DOP, Wtemp, DOY (standardized numeric covariates), "
        "sample (int, repeated survey 1-4), spp (factor, 7 species/stages), count (int). "
        "Typical negative binomial GLMM: count ~ spp + mined + (1 | site), family nbinom2 or nbinom1."
    ),
    "bacteria": (
        "bacteria (R package MASS): presence of Haemophilus influenzae in 50 children with "
        "otitis media in the Northern Territory of Australia, tested at weeks 0, 2, 4, 6 and 11; "
        "220 rows (some visits missing). Columns: y (factor n/y, bacteria absent/present), "
        "ap (factor a/p, active drug or placebo), hilo (factor hi/lo, high or low compliance), "
        "week (int, week of the test), ID (factor, 50 children, X01 ... Z26), trt (factor "
        "placebo/drug/drug+, placebo, drug with low or with high compliance). "
        "Typical binomial GLMM: y ~ trt + I(week > 2) + (1 | ID); the response is y == \"y\"."
    ),
    "cbpp": (
        "cbpp (R package lme4): contagious bovine pleuropneumonia in 15 zebu herds in Ethiopia "
        "followed over 4 periods (Lesnoff et al. 2004); 56 rows. Columns: herd (factor, 15 herds), "
        "incidence (int, number of new serological cases in the period), size (int, herd size at "
        "the start of the period), period (factor 1-4). Typical binomial GLMM: "
        "cbind(incidence, size - incidence) ~ period + (1 | herd). For an observation-level "
        "random effect add obs = one factor level per row yourself and use + (1 | obs)."
    ),
    "Contraception": (
        "Contraception (R package mlmRev): contraceptive use in the 1988 Bangladesh Fertility "
        "Survey; 1934 rows, one per woman. Columns: woman (factor, id), district (factor, 60 "
        "districts; district 54 does not occur), use (factor N/Y, uses contraception), livch "
        "(factor 0/1/2/3+, number of living children), age (float, age in years centred at the "
        "mean), urban (factor N/Y, urban residence). Typical binomial GLMM: "
        "use ~ age + I(age^2) + urban + livch + (1 | district); the response is use == \"Y\". "
        "A common derived column is ch = livch != \"0\" (has children), e.g. "
        "use ~ age * ch + I(age^2) + urban + (urban | district); add it yourself."
    ),
    "grouseticks": (
        "grouseticks (R package lme4): ticks counted on the heads of red grouse chicks in "
        "Scotland (Elston et al. 2001); 403 rows, one per chick. Columns: INDEX (factor, chick, "
        "one level per row), TICKS (int, number of ticks), BROOD (factor, 118 broods), HEIGHT "
        "(int, altitude of the location in metres), YEAR (factor 95/96/97), LOCATION (factor, "
        "63 locations), cHEIGHT (float, HEIGHT centred at its mean). Typical Poisson GLMM: "
        "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION); centred or scaled "
        "height (cHEIGHT, or a column you add) helps the fit."
    ),
    "guImmun": (
        "guImmun (R package mlmRev): complete immunization of children in the 1987 Guatemalan "
        "Survey of Family Health (Rodríguez and Goldman 1995, 2001); 2159 rows, one per child "
        "aged 1-4 who received at least one immunization. Columns: kid (factor, child id), mom "
        "(factor, 1595 mothers), comm (factor, 161 communities), immun (factor N/Y, complete "
        "immunization), kid2p (factor N/Y, child aged 2 or more), mom25p (factor N/Y, mother aged "
        "25 or more), ord (factor 01/23/46/7p, birth order), ethn (factor L/N/S: Ladino, "
        "indigenous not speaking Spanish, indigenous speaking Spanish), momEd and husEd (factors, "
        "mother's and husband's education: N none, P primary, S secondary or more, U unknown), "
        "momWork (factor N/Y), rural (factor N/Y), pcInd81 (float, proportion indigenous in the "
        "1981 census). Mothers are nested in communities and most have one child, a hard case for "
        "PQL and for lme4's optimizer. Typical binomial GLMM: immun ~ kid2p + mom25p + ord + "
        "ethn + momEd + husEd + momWork + rural + pcInd81 + (1 | mom) + (1 | comm); the response "
        "is immun == \"Y\"."
    ),
    "Oats": (
        "Oats (R package nlme): split-plot field trial of oats (Yates 1935), 6 blocks with 3 "
        "varieties on whole plots and 4 nitrogen levels on subplots; 72 rows. Columns: Block "
        "(factor VI/V/III/IV/II/I, nlme's level order; ordered in nlme, an unordered Categorical "
        "here), Variety (factor Golden Rain/Marvellous/Victory), nitro (float, nitrogen in "
        "cwt/acre: 0, 0.2, 0.4, 0.6), yield (int, bushels/acre). Exported as a plain data.frame "
        "(nlme's groupedData attributes dropped). Typical mixed model with varieties nested in "
        "blocks: yield ~ nitro + Variety + (1 | Block/Variety), as an LMM or e.g. with a Gamma or "
        "Gaussian family and a log link."
    ),
    "Owls": (
        "Owls (R package glmmTMB): begging of barn owl nestlings (Roulin and Bersier 2007; Zuur et "
        "al. 2009); 599 rows, one per parent arrival at a nest. Columns: Nest (factor, 27 nests), "
        "FoodTreatment (factor Deprived/Satiated), SexParent (factor Female/Male), ArrivalTime "
        "(float, hour of arrival), SiblingNegotiation (int, calls by the brood in the 30 s before "
        "arrival), BroodSize (int, 1-7 chicks), NegPerChick (float, SiblingNegotiation / "
        "BroodSize, rounded to 8 decimals), logBroodSize (float, log(BroodSize)); the last two "
        "come with glmmTMB's copy. Typical negative binomial GLMM with an exposure offset: "
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)."
    ),
    "sleepstudy": (
        "sleepstudy (R package lme4): reaction times of 18 subjects under sleep deprivation "
        "(Belenky et al. 2003); 180 rows, 10 days per subject. Columns: Reaction (float, average "
        "reaction time in ms), Days (int, days of sleep deprivation, 0-9; days 0-2 were "
        "adaptation and baseline), Subject (factor, 18 subjects). Typical linear mixed model: "
        "Reaction ~ Days + (Days | Subject). Users who keep only the deprivation days add e.g. "
        "days_deprived = Days - 2 on Days >= 2 themselves."
    ),
    "VerbAgg": (
        "VerbAgg (R package lme4): verbal aggression questionnaire, 316 subjects answering 24 "
        "items (De Boeck and Wilson 2004); 7584 rows, one per subject and item. Columns: Anger "
        "(int, trait anger score), Gender (factor F/M), item (factor, 24 items), resp (factor "
        "no/perhaps/yes; ordered in R, an unordered Categorical with that level order here), "
        "id (factor, 316 subjects), btype (factor curse/scold/shout, behaviour type), situ (factor "
        "other/self, who is to blame in the situation), mode (factor want/do), r2 (factor N/Y, "
        "resp dichotomised: Y unless resp is no). Typical binomial GLMM: "
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item); the response is r2 == \"Y\"."
    ),
}


@lru_cache(maxsize=1)
def _levels() -> dict[str, dict[str, list[str]]]:
    text = resources.files(__name__).joinpath("levels.json").read_text(encoding="utf-8")
    return json.loads(text)


def _canonical(name: str) -> str:
    key = name.lower() if isinstance(name, str) else None
    if key not in _BY_LOWER:
        raise DataError(f"unknown data set {name!r}; available data sets: {', '.join(_NAMES)}")
    return _BY_LOWER[key]


@lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    levels = _levels().get(name, {})
    with resources.files(__name__).joinpath(f"{name}.csv.gz").open("rb") as fh:
        frame = pd.read_csv(
            fh,
            compression="gzip",
            dtype={col: str for col in levels},
            keep_default_na=False,  # only R's NA is missing; "N", "n", "" stay values
            na_values=["NA"],
        )
    for col, lv in levels.items():
        values = frame[col]
        unknown = set(values.dropna().unique()) - set(lv)
        if unknown:  # pragma: no cover - guards against a broken data file
            raise DataError(f"{name}: column {col!r} has values {sorted(unknown)} outside its levels")
        frame[col] = pd.Categorical(values, categories=lv)
    return frame


def names() -> tuple[str, ...]:
    """The canonical names of the bundled data sets."""
    return _NAMES


def load(name: str, derived: bool = False) -> pd.DataFrame:
    """Load a bundled data set by name (case-insensitive); returns a fresh copy each call.

    derived=True adds the columns the classic analyses derive, as in R:
    cbpp ``obs = factor(1:nrow(cbpp))`` (an observation-level random effect) and
    Contraception ``ch = factor(livch != "0", labels = c("N", "Y"))``.
    """
    d = _read(_canonical(name)).copy(deep=True)
    if derived:
        d = _add_derived(_canonical(name), d)
    return d


def _add_derived(name: str, d: pd.DataFrame) -> pd.DataFrame:
    if name == "cbpp":
        lv = [str(i) for i in range(1, len(d) + 1)]
        d["obs"] = pd.Categorical(lv, categories=lv)
    elif name == "Contraception":
        ch = np.where(d["livch"].astype(str) != "0", "Y", "N")
        d["ch"] = pd.Categorical(ch, categories=["N", "Y"])
    return d


def describe(name: str) -> str:
    """One paragraph on a data set: origin, rows, columns and a typical model formula."""
    return _DESCRIPTIONS[_canonical(name)]
