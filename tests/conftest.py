"""Shared fixtures: an isolated deft home, the real bundled model, and the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
HH_TEST = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
LLAMA_FACTORY = SHARED_DATA / "llama-factory" / "dpo_en_demo.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Tests never reach the Hub. The deft home persists between local runs (converted model, about
# 0.5 GB) under .deft/, which git ignores; a fresh clone converts the bundled model once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("DEFT_HOME", str(REPO / ".deft" / "test-home"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def bundled():
    """The real bundled SmolLM2-135M-Instruct, loaded once per test session (bf16 where supported)."""
    from deft_core.models import load_model

    return load_model("bundled")


@pytest.fixture(scope="session")
def bundled_fp32():
    from deft_core.models import load_model

    return load_model("bundled", dtype="float32")


@pytest.fixture
def hh_path() -> Path:
    if not HH_TEST.is_file():
        pytest.skip(f"shared HH-RLHF file not present at {HH_TEST}")
    return HH_TEST


@pytest.fixture
def llama_factory_path() -> Path:
    if not LLAMA_FACTORY.is_file():
        pytest.skip(f"shared LLaMA-Factory file not present at {LLAMA_FACTORY}")
    return LLAMA_FACTORY


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A deft home of this test's own, for checks of the score cache; converted models are shared."""
    shared_models = Path(os.environ["DEFT_HOME"]) / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "deft-home"
    home.mkdir()
    (home / "models").symlink_to(shared_models)
    monkeypatch.setenv("DEFT_HOME", str(home))
    return home
