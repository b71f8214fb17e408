"""Choose a subset of scored pairs and write it back in the input's own format.

Selections: the top or bottom k% by pair score, every pair with score >= a threshold, or a
seeded random k% baseline that separates the effect of the score from the effect of less data.
Pairs without a finite score are never kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from deft_core.errors import DeftError
from deft_core.loading import DataOptions, LoadedData, load_pairs
from deft_core.sources import atomic_path, file_format, write_records

Method = Literal["top", "bottom", "threshold", "random"]
METHODS = ("top", "bottom", "threshold", "random")


@dataclass(frozen=True)
class Selection:
    """A rule for the pairs to keep: method "top", "bottom" or "random" with `value` in percent,
    or "threshold" with `value` as the minimum pair score. `seed` is used by "random" only."""

    method: Method
    value: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DeftError(f"invalid selection {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.method != "threshold" and not 0 < self.value <= 100:
            raise DeftError(f"--{self.method} takes a percentage in (0, 100], got {self.value}")
        if self.method == "threshold" and not math.isfinite(self.value):
            raise DeftError(f"threshold must be a finite number, got {self.value}")

    def describe(self) -> str:
        if self.method == "threshold":
            return f"score >= {self.value:g}"
        seed = f", seed {self.seed}" if self.method == "random" else ""
        return f"{self.method} {self.value:g}%{seed}"


def percent_count(total: int, percent: float) -> int:
    """Return round(total * percent / 100), halves rounded up, and at least 1 pair."""
    return max(1, math.floor(total * percent / 100 + 0.5))


def select(scores: np.ndarray, selection: Selection) -> np.ndarray:
    """Return a boolean keep mask over `scores`. Shape: (N,) -> (N,)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    keep = np.zeros(len(scores), dtype=bool)
    if selection.method == "threshold":
        keep[finite] = scores[finite] >= selection.value
        return keep
    count = min(percent_count(len(finite), selection.value), len(finite))
    if selection.method == "random":
        chosen = np.random.default_rng(selection.seed).choice(finite, size=count, replace=False)
    else:
        # Stable sort on the score; ties keep input order.
        order = finite[np.argsort(scores[finite], kind="stable")]
        chosen = order[::-1][:count] if selection.method == "top" else order[:count]
    keep[chosen] = True
    return keep


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """Return the kept, dropped and ids file paths for an output name such as "kept.jsonl"."""
    out = Path(out)
    kind = file_format(out)
    if kind is None:
        raise DeftError(f"{out}: unsupported output type; use .jsonl, .jsonl.gz, .json, .parquet or .csv")
    suffix = "." + kind
    stem = out.name[: -len(suffix)]
    return out, out.with_name(f"{stem}.dropped{suffix}"), out.with_name(f"{stem}.ids.json")


def reload_scored_data(meta: dict) -> LoadedData:
    """Read the dataset a score file was computed on, and check that it is unchanged."""
    options = DataOptions(**meta["data"]["options"])
    if meta["data"]["source_kind"] != "hub":
        options.path = meta["data"]["source_path"]  # absolute, so any working folder works
    data = load_pairs(options)
    if data.fingerprint != meta["data"]["fingerprint"]:
        raise DeftError(
            f"{meta['data']['source']} changed since it was scored (fingerprint differs); score it again"
        )
    return data


def write_subset(table: pd.DataFrame, meta: dict, selection: Selection, out: str | Path) -> dict:
    """Write kept and dropped pairs in the input's format, plus an ids file; return the summary."""
    keep = select(table["score"].to_numpy(), selection)
    data = reload_scored_data(meta)
    by_id = {pair.id: pair for pair in data.pairs}
    kept_ids = table.loc[keep, "pair_id"].tolist()
    dropped_ids = table.loc[~keep, "pair_id"].tolist()
    kept_path, dropped_path, ids_path = output_paths(out)
    write_records(kept_path, [by_id[i].raw for i in kept_ids])
    write_records(dropped_path, [by_id[i].raw for i in dropped_ids])
    summary = {
        "selection": {**asdict(selection), "description": selection.describe()},
        "source": meta["data"]["source"],
        "scores_cache_key": meta.get("cache_key"),
        "kept": len(kept_ids),
        "dropped": len(dropped_ids),
        "kept_path": str(kept_path),
        "dropped_path": str(dropped_path),
        "kept_ids": kept_ids,
        "dropped_ids": dropped_ids,
    }
    with atomic_path(ids_path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary
