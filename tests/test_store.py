"""Score files and the score cache: round trips and atomic writes."""

from __future__ import annotations

import pandas as pd
import pytest

from deft_core import store
from deft_core.errors import DeftError
from deft_core.sources import atomic_path


def sample_table() -> pd.DataFrame:
    return pd.DataFrame({"pair_id": ["a", "b"], "score": [0.5, -0.25], "flags": ["", "duplicate"]})


def test_save_and_load_round_trip(tmp_path):
    path = store.save_scores(tmp_path / "s.parquet", sample_table(), {"options": {"alpha": 0.0}})
    table, meta = store.load_scores(path)
    assert table.equals(sample_table())
    assert meta == {"options": {"alpha": 0.0}}
    assert (tmp_path / "s.meta.json").is_file()


def test_score_file_needs_parquet_name(tmp_path):
    with pytest.raises(DeftError, match=r"ending in \.parquet"):
        store.save_scores(tmp_path / "s.csv", sample_table(), {})


def test_foreign_parquet_is_rejected(tmp_path):
    path = tmp_path / "other.parquet"
    sample_table().to_parquet(path)
    with pytest.raises(DeftError, match="not a deft score file"):
        store.load_scores(path)


def test_missing_score_file(tmp_path):
    with pytest.raises(DeftError, match="score file not found"):
        store.load_scores(tmp_path / "nope.parquet")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_cache_round_trip(fresh_home):
    key = store.cache_key({"model": "m", "data": "d"})
    assert store.cached_scores(key) is None
    store.store_in_cache(key, sample_table(), {"cache_key": key})
    table, meta = store.cached_scores(key)
    assert table.equals(sample_table())
    assert meta["cache_key"] == key
    leftovers = [p.name for p in (fresh_home / "scores").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_cache_key_depends_on_every_field():
    base = {"model": "m", "data": "d", "options": {"alpha": 0.0}}
    assert store.cache_key(base) == store.cache_key(dict(reversed(base.items())))
    assert store.cache_key(base) != store.cache_key({**base, "options": {"alpha": 0.1}})
