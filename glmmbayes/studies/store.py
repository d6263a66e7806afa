"""A study's store: a folder with one Parquet file per finished chunk and a manifest.

`study.json` identifies the study (seed, design points, methods and options); a run on a store
that holds another study is refused rather than mixed. Chunk files are written to a temporary
name and renamed, so a file that exists is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..errors import SpecError

MANIFEST = "study.json"


class Store:
    """The folder `path` holding a study's finished chunks (created on first use)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def check_manifest(self, manifest: dict) -> None:
        """Write the study's manifest, or check that the stored one is the same study."""
        self.path.mkdir(parents=True, exist_ok=True)
        f = self.path / MANIFEST
        text = json.dumps(manifest, sort_keys=True, indent=1, default=str)
        if f.exists():
            old = json.loads(f.read_text())
            new = json.loads(text)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff:
                raise SpecError(f"store {str(self.path)!r} holds another study (different {', '.join(diff)}); "
                                "use a new store or delete this one")
            return
        tmp = f.with_suffix(".json.tmp")
        tmp.write_text(text)
        os.replace(tmp, f)

    def chunk_files(self) -> list[Path]:
        return sorted(self.path.glob("chunk-*.parquet")) if self.path.exists() else []

    def write_chunk(self, name: str, frame: pd.DataFrame) -> None:
        f = self.path / f"chunk-{name}.parquet"
        tmp = self.path / f".tmp-{name}.parquet"
        frame.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, f)

    def read(self) -> pd.DataFrame | None:
        """All finished chunks as one frame (None when there are none)."""
        files = self.chunk_files()
        if not files:
            return None
        return pd.concat([pd.read_parquet(f, engine="pyarrow") for f in files], ignore_index=True)
