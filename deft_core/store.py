"""Score files (Parquet, one row per pair, with JSON metadata) and the score cache under the deft home.

A score file `NAME.parquet` carries its metadata twice: inside the Parquet schema (key "deft"),
so the file alone is complete, and beside it as `NAME.meta.json` for people and other tools.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deft_core.errors import DeftError
from deft_core.home import deft_home
from deft_core.sources import atomic_path

METADATA_KEY = b"deft"


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + ".meta.json")


def save_scores(path: str | Path, table: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write the score table and metadata atomically; return the Parquet path."""
    path = Path(path)
    if path.suffix != ".parquet":
        raise DeftError(f"{path}: score files are Parquet; give a name ending in .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(meta)})
    with atomic_path(path) as temporary:
        pq.write_table(arrow, temporary)
    with atomic_path(meta_path(path)) as temporary:
        temporary.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def load_scores(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a score file written by save_scores."""
    path = Path(path)
    if not path.is_file():
        raise DeftError(f"score file not found: {path}")
    try:
        arrow = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged or foreign file
        raise DeftError(f"{path}: not a readable Parquet file ({error})") from error
    raw = (arrow.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DeftError(f"{path}: not a deft score file (no deft metadata); create one with `deft score`")
    return arrow.to_pandas(), json.loads(raw)


def cache_key(identity: dict[str, Any]) -> str:
    """Hash everything that determines the scores into a short cache key."""
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_entry(key: str) -> Path:
    return deft_home() / "scores" / key / "scores.parquet"


def cached_scores(key: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    path = cache_entry(key)
    return load_scores(path) if path.is_file() else None


def store_in_cache(key: str, table: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Save a cache entry as a whole: an interrupted write leaves no entry behind."""
    final = cache_entry(key).parent
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        save_scores(staging / "scores.parquet", table, meta)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / "scores.parquet"
