"""Export a selected subset from the dashboard: files in the input's format, ids and score metadata.

An export folder contains `kept.<ext>` and `kept.dropped.<ext>` (the raw input records, written by
filtering.write_subset), `kept.ids.json` (the selection, ids and counts) and `scores.parquet`
(the full score table with its metadata), so that a training run can trace every pair.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd

from deft_core import store
from deft_core.errors import DeftError
from deft_core.filtering import Selection, write_subset
from deft_core.home import deft_home

logger = logging.getLogger(__name__)

# Hub datasets have no file format of their own, so they are exported as JSON Lines.
HUB_EXPORT_FORMAT = "jsonl"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def workspace_subsets() -> Path:
    folder = deft_home() / "workspace" / "subsets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_format(meta: dict) -> str:
    """Return the file extension (without dot) that matches the scored input's format."""
    kind = meta["data"]["source_kind"]
    return HUB_EXPORT_FORMAT if kind == "hub" else kind


def default_name(meta: dict, selection: Selection) -> str:
    stem = Path(meta["data"]["source"]).name.split(".")[0] or "subset"
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", selection.describe()).strip("-")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stem}-{label}-{stamp}"[:80]


def export_subset(table: pd.DataFrame, meta: dict, selection: Selection, folder: Path) -> dict:
    """Write kept and dropped records, the ids file and the score file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = write_subset(table, meta, selection, folder / f"kept.{export_format(meta)}")
    store.save_scores(folder / "scores.parquet", table, meta)
    summary["folder"] = str(folder)
    logger.info("exported %d kept and %d dropped pairs to %s", summary["kept"], summary["dropped"], folder)
    return summary


def export_bytes(table: pd.DataFrame, meta: dict, selection: Selection) -> dict[str, bytes]:
    """Return the export files as bytes by file name, for browser downloads."""
    with tempfile.TemporaryDirectory(prefix="deft-export-") as temporary:
        folder = Path(temporary)
        export_subset(table, meta, selection, folder)
        # The temporary folder is gone after the download, so the ids file names files only.
        ids_path = next(folder.glob("*.ids.json"))
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
        for key in ("kept_path", "dropped_path"):
            ids[key] = Path(ids[key]).name
        ids_path.write_text(json.dumps(ids, indent=2, ensure_ascii=False), encoding="utf-8")
        return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def save_to_workspace(table: pd.DataFrame, meta: dict, selection: Selection, name: str) -> dict:
    """Export into deft_home()/workspace/subsets/<name>/; an existing name is rejected."""
    if not NAME_PATTERN.match(name):
        raise DeftError(
            f"invalid subset name {name!r}: use up to 80 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    folder = workspace_subsets() / name
    if folder.exists():
        raise DeftError(f"a subset named {name!r} already exists in {folder.parent}; choose another name")
    return export_subset(table, meta, selection, folder)
