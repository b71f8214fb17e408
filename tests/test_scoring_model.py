"""Scoring with the real bundled model on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deft_core.distributions import TokenDistributions
from deft_core.encoding import PairEncoder
from deft_core.errors import DeftError
from deft_core.loading import DataOptions, load_pairs
from deft_core.scorer import SequenceScorer
from deft_core.scoring import ScoreOptions, score_data

pytestmark = pytest.mark.model


def test_first_64_hh_pairs(bundled, hh_path, fresh_home):
    data = load_pairs(DataOptions(str(hh_path), limit=64))
    result = score_data(data, bundled)
    table = result.table

    assert len(table) == 64
    assert not result.from_cache
    assert np.isfinite(table[["reward_chosen", "reward_rejected", "score", "logp_chosen"]].to_numpy()).all()
    assert np.allclose(table["score"], table["reward_chosen"] - table["reward_rejected"])
    assert (table["logp_chosen"] < 0).all()
    assert table["pair_id"].tolist() == [p.id for p in data.pairs]
    assert abs(result.distributions.q_diff.sum()) < 1e-12
    assert result.meta["options"]["template"] == "chat"
    assert result.meta["model"]["hash"].startswith("gguf:")

    again = score_data(load_pairs(DataOptions(str(hh_path), limit=64)), bundled)
    assert again.from_cache
    assert again.table.equals(table)


def test_real_model_matches_full_logits(bundled_fp32, hh_path):
    """The hidden-state shortcut equals Q_diff . log_softmax of the model's own logits."""
    data = load_pairs(DataOptions(str(hh_path), limit=4))
    encoder = PairEncoder(bundled_fp32.tokenizer, "chat", 1024)
    encoded = encoder.encode_many(data.pairs)
    vocab = bundled_fp32.model.config.vocab_size
    dist = TokenDistributions.from_sequences(
        [e.chosen_ids for e in encoded], [e.rejected_ids for e in encoded], bundled_fp32.tokenizer, vocab
    )
    scorer = SequenceScorer(bundled_fp32.model, dist.q_diff, "logprob")
    result = scorer.score([e.prompt_ids for e in encoded], [e.chosen_ids for e in encoded])
    q_diff = torch.tensor(dist.q_diff, dtype=torch.float64)
    for i, e in enumerate(encoded):
        with torch.no_grad():
            logits = bundled_fp32.model(input_ids=torch.tensor([e.prompt_ids + e.chosen_ids])).logits[0]
        positions = slice(len(e.prompt_ids) - 1, len(e.prompt_ids) + len(e.chosen_ids) - 1)
        expected = (torch.log_softmax(logits[positions].double(), -1) @ q_diff).mean().item()
        assert result.rewards[i] == pytest.approx(expected, abs=1e-4)


def test_prob_form_and_chosen_score(bundled, fresh_home):
    data = load_pairs(DataOptions("sample", limit=8))
    result = score_data(data, bundled, ScoreOptions(reward_form="prob", pair_score="chosen"))
    q_diff = result.distributions.q_diff
    assert np.allclose(result.table["score"], result.table["reward_chosen"])
    assert (result.table["reward_chosen"] <= q_diff.max()).all()
    assert (result.table["reward_chosen"] >= q_diff.min()).all()


def test_reference_dataset_supplies_q_diff(bundled, fresh_home):
    data = load_pairs(DataOptions("sample", limit=4))
    reference = load_pairs(DataOptions("sample", limit=40))
    result = score_data(data, bundled, reference=reference)
    assert result.meta["reference"].endswith("sample_hh.jsonl")
    assert sum(result.distributions.chosen_counts) > 100


def test_llama_factory_file(bundled, llama_factory_path, fresh_home):
    data = load_pairs(DataOptions(str(llama_factory_path), limit=12))
    result = score_data(data, bundled, ScoreOptions(max_length=512))
    assert len(result.table) == 12
    assert np.isfinite(result.table["score"]).all()


def test_invalid_options_listed_together():
    with pytest.raises(DeftError) as error:
        ScoreOptions(reward_form="kl", batch_size=0)
    assert "reward_form must be one of logprob, prob" in str(error.value)
    assert "batch_size must be at least 1" in str(error.value)
