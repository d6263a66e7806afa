"""Data files for the command line: CSV/TSV, Parquet and Feather in and out, and factor columns
with a stated level order (a CSV file does not keep R's or pandas' level order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError

READERS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".feather": "feather", ".arrow": "feather"}


class MissingDependency(ImportError):
    """A file format needs an optional package that is not installed."""


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        suffixes = suffixes[:-1]
    kind = READERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DataError(f"data file {str(path)!r}: unknown format; use one of "
                        f"{', '.join(sorted(READERS))} (optionally compressed: .gz, .bz2, .xz)")
    return kind


def _arrow(what: str):
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise MissingDependency(f"{what} files need the optional pyarrow package (pip install pyarrow)") from e


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a data frame from CSV/TSV (optionally compressed), Parquet or Feather by extension."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    try:
        if kind in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
        _arrow(kind.capitalize())
        return pd.read_parquet(path) if kind == "parquet" else pd.read_feather(path)
    except (MissingDependency, DataError):
        raise
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"data file {str(path)!r} could not be read as {kind}: {e}") from e


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a data frame as CSV/TSV, Parquet or Feather by extension."""
    path = Path(path)
    kind = _kind(path)
    if kind in ("csv", "tsv"):
        frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)
    else:
        _arrow(kind.capitalize())
        (frame.to_parquet if kind == "parquet" else frame.to_feather)(path)
    return path


def _labels(values: pd.Series) -> pd.Series:
    """Values as level labels: whole floats as integers ("1", not "1.0"), missing kept missing."""
    v = values
    if pd.api.types.is_float_dtype(v) and np.all(np.isnan(v) | (v == np.round(v))):
        v = v.astype("Int64")
    out = v.astype("string").astype(object)
    return out.where(values.notna(), None)


def as_factor(frame: pd.DataFrame, column: str, levels: Sequence[str] | None = None, *,
              option: str = "--levels") -> pd.Series:
    """Column as a pandas Categorical with the given level order (R's factor(): sorted unique
    values when `levels` is None). Values outside `levels` are a DataError naming them."""
    if column not in frame.columns:
        raise DataError(f"{option}: column {column!r} is not in the data; columns: {', '.join(map(str, frame.columns))}")
    col = frame[column]
    if levels is None:
        uniq = col.dropna().unique()
        try:
            uniq = np.sort(uniq)
        except TypeError:
            uniq = sorted(map(str, uniq))
        levels = list(dict.fromkeys(_labels(pd.Series(uniq)).tolist()))
    levels = [str(x) for x in levels]
    if len(set(levels)) != len(levels):
        raise DataError(f"{option}: the levels of column {column!r} repeat a value: {levels}")
    lab = _labels(col)
    unknown = sorted(set(lab.dropna()) - set(levels))
    if unknown:
        raise DataError(f"{option}: column {column!r} has values {unknown[:10]} that are not among its "
                        f"levels {levels}")
    return pd.Series(pd.Categorical(lab, categories=levels), index=frame.index, name=column)


def parse_levels(specs: Sequence[str]) -> dict[str, list[str]]:
    """``col=a,b,c`` strings as {col: [a, b, c]}."""
    out = {}
    for s in specs:
        col, sep, rest = s.partition("=")
        if not sep or not col.strip() or not rest.strip():
            raise DataError(f"--levels takes COLUMN=LEVEL1,LEVEL2,...; got {s!r}")
        out[col.strip()] = [x.strip() for x in rest.split(",")]
    return out


def read_levels_json(path: str | Path) -> dict[str, list[str]]:
    """A JSON object {column: [levels in order]}."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"levels file {str(path)!r} does not exist") from e
    except json.JSONDecodeError as e:
        raise DataError(f"levels file {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(obj, dict) or not all(isinstance(v, list) for v in obj.values()):
        raise DataError(f"levels file {str(path)!r} must hold a JSON object {{column: [levels]}}")
    return {str(k): [str(x) for x in v] for k, v in obj.items()}


def apply_factors(frame: pd.DataFrame, factors: Sequence[str] = (),
                  levels: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """A copy of `frame` with the `factors` columns (sorted levels) and the `levels` columns
    (the given order) as Categoricals."""
    out = frame.copy()
    for col in factors:
        if col not in (levels or {}):
            out[col] = as_factor(frame, col, option="--factor")
    for col, lv in (levels or {}).items():
        out[col] = as_factor(frame, col, lv)
    return out


def factor_levels(frame: pd.DataFrame) -> dict[str, list[str]]:
    """{column: levels} of the Categorical columns (to write next to an exported CSV)."""
    return {c: [str(x) for x in frame[c].cat.categories] for c in frame.columns
            if isinstance(frame[c].dtype, pd.CategoricalDtype)}
