"""Dashboard exports: downloadable bytes and workspace folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_filtering import fake_scores

from deft_core.errors import DeftError
from deft_core.filtering import Selection
from deft_core.loading import DataOptions, load_pairs
from deft_core.subsets import export_bytes, save_to_workspace


@pytest.fixture
def scored(tmp_path):
    source = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = load_pairs(DataOptions(str(source)))
    return fake_scores(data, np.arange(10, dtype=float))


def test_download_files_name_no_temporary_paths(scored):
    table, meta = scored
    meta = {**meta, "options": {}}
    files = export_bytes(table, meta, Selection("top", 20))
    assert set(files) == {
        "kept.jsonl",
        "kept.dropped.jsonl",
        "kept.ids.json",
        "scores.parquet",
        "scores.meta.json",
    }
    ids = json.loads(files["kept.ids.json"])
    assert ids["kept_path"] == "kept.jsonl"
    assert ids["dropped_path"] == "kept.dropped.jsonl"
    assert len(files["kept.jsonl"].decode().splitlines()) == 2


def test_workspace_rejects_bad_and_repeated_names(scored, fresh_home):
    table, meta = scored
    with pytest.raises(DeftError, match="invalid subset name"):
        save_to_workspace(table, meta, Selection("top", 20), "../escape")
    summary = save_to_workspace(table, meta, Selection("top", 20), "top20")
    assert summary["kept"] == 2
    with pytest.raises(DeftError, match="already exists"):
        save_to_workspace(table, meta, Selection("top", 20), "top20")
