"""Subset selection and writing kept and dropped pairs in the input's own format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deft_core.errors import DeftError
from deft_core.filtering import Selection, output_paths, percent_count, select, write_subset
from deft_core.loading import DataOptions, load_pairs


def test_percent_count_rounds_half_up():
    assert percent_count(2303, 5) == 115
    assert percent_count(260, 5) == 13
    assert percent_count(10, 5) == 1  # 0.5 rounds up
    assert percent_count(3, 1) == 1  # never empty


def test_top_and_bottom_pick_extremes():
    scores = np.array([0.1, 0.9, -0.5, 0.4, 0.0, 0.8, 0.3, 0.2, -0.1, 0.5])
    top = select(scores, Selection("top", 20))
    bottom = select(scores, Selection("bottom", 20))
    assert np.flatnonzero(top).tolist() == [1, 5]
    assert np.flatnonzero(bottom).tolist() == [2, 8]


def test_threshold_keeps_scores_at_or_above():
    scores = np.array([0.1, 0.2, 0.3, np.nan])
    assert select(scores, Selection("threshold", 0.2)).tolist() == [False, True, True, False]


def test_nan_scores_are_never_kept():
    scores = np.array([np.nan, 1.0, 2.0, np.nan])
    assert select(scores, Selection("top", 100)).tolist() == [False, True, True, False]
    assert select(scores, Selection("random", 100, seed=1)).tolist() == [False, True, True, False]


def test_random_is_seeded_and_sized():
    scores = np.arange(1000, dtype=float)
    first = select(scores, Selection("random", 5, seed=7))
    again = select(scores, Selection("random", 5, seed=7))
    other = select(scores, Selection("random", 5, seed=8))
    assert first.sum() == 50
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_ties_keep_input_order():
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    assert np.flatnonzero(select(scores, Selection("top", 50))).tolist() == [1, 2]


@pytest.mark.parametrize("value", [0, -5, 101])
def test_invalid_percentages_rejected(value):
    with pytest.raises(DeftError, match="percentage"):
        Selection("top", value)


def test_output_paths():
    kept, dropped, ids = output_paths("out/kept.jsonl.gz")
    assert (kept.name, dropped.name, ids.name) == ("kept.jsonl.gz", "kept.dropped.jsonl.gz", "kept.ids.json")
    with pytest.raises(DeftError, match="unsupported output type"):
        output_paths("out/kept.txt")


def fake_scores(data, values) -> tuple[pd.DataFrame, dict]:
    table = pd.DataFrame({"pair_id": [p.id for p in data.pairs], "score": values})
    meta = {
        "data": {
            "options": data.options.to_dict(),
            "source": data.source.describe(),
            "source_kind": data.source.kind,
            "source_path": data.source.path,
            "fingerprint": data.fingerprint,
        },
        "cache_key": "test",
    }
    return table, meta


def test_write_subset_keeps_input_format(tmp_path):
    source = tmp_path / "pairs.json"
    records = [
        {"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "extra": i} for i in range(10)
    ]
    source.write_text(json.dumps(records))
    data = load_pairs(DataOptions(str(source)))
    table, meta = fake_scores(data, np.arange(10, dtype=float))

    summary = write_subset(table, meta, Selection("top", 30), tmp_path / "out" / "kept.json")

    kept = json.loads((tmp_path / "out" / "kept.json").read_text())
    dropped = json.loads((tmp_path / "out" / "kept.dropped.json").read_text())
    ids = json.loads((tmp_path / "out" / "kept.ids.json").read_text())
    assert [r["extra"] for r in kept] == [7, 8, 9]
    assert len(dropped) == 7
    assert kept[0] == records[7]  # the record exactly as read, extra columns included
    assert ids["kept_ids"] == summary["kept_ids"] == [data.pairs[i].id for i in (7, 8, 9)]


def test_write_subset_detects_changed_input(tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n")
    data = load_pairs(DataOptions(str(source)))
    table, meta = fake_scores(data, [1.0])
    source.write_text(json.dumps({"prompt": "Q", "chosen": "changed", "rejected": "b"}) + "\n")
    with pytest.raises(DeftError, match="changed since it was scored"):
        write_subset(table, meta, Selection("top", 50), tmp_path / "kept.jsonl")
