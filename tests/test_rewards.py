"""The distribution reward against a plain full-softmax reference, on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from deft_core.rewards import (
    PAIR_SCORES,
    distribution_reward,
    masked_mean,
    sequence_logprobs,
    token_rewards_from_hidden,
    token_rewards_logprob,
)
from deft_core.scorer import SequenceScorer

VOCAB = 97


def tiny_model(tie: bool = True, bias: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(config).eval()
    if bias:
        head = torch.nn.Linear(32, VOCAB, bias=True)
        head.weight.data.copy_(model.lm_head.weight.data)
        torch.nn.init.normal_(head.bias, std=0.5)
        model.lm_head = head
    return model


def random_q_diff(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    plus, minus = rng.random(VOCAB), rng.random(VOCAB)
    return plus / plus.sum() - minus / minus.sum()


def reference_reward(model, prompt: list[int], response: list[int], q_diff: np.ndarray, form: str):
    """Score one unpadded sequence with full logits in float64, one position at a time."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    total = 0.0
    logp = 0.0
    for t, token in enumerate(response):
        z = logits[len(prompt) - 1 + t]
        log_p = torch.log_softmax(z, dim=-1).numpy()
        weights = log_p if form == "logprob" else np.exp(log_p)
        total += float((q_diff * weights).sum())
        logp += float(log_p[token])
    return total / len(response), logp


SEQUENCES = [
    ([5, 6, 7], [8, 9, 10, 11]),
    ([12, 13, 14, 15, 16, 17, 18], [19, 20]),
    ([21], [22, 23, 24, 25, 26, 27, 28, 29]),
]


@pytest.mark.parametrize("form", ["logprob", "prob"])
@pytest.mark.parametrize("bias", [False, True])
def test_scorer_matches_full_softmax_reference(form, bias):
    model = tiny_model(bias=bias)
    q_diff = random_q_diff()
    scorer = SequenceScorer(model, q_diff, form, pad_id=0)
    result = scorer.score([p for p, _ in SEQUENCES], [r for _, r in SEQUENCES], keep_token_rewards=True)
    for i, (prompt, response) in enumerate(SEQUENCES):
        expected_reward, expected_logp = reference_reward(model, prompt, response, q_diff, form)
        assert result.rewards[i] == pytest.approx(expected_reward, abs=1e-5)
        assert result.logps[i] == pytest.approx(expected_logp, abs=1e-4)
        assert result.token_counts[i] == len(response)
        assert result.token_rewards[i].mean() == pytest.approx(expected_reward, abs=1e-5)


def test_hidden_shortcut_is_used_for_linear_head():
    assert SequenceScorer(tiny_model(), random_q_diff()).uses_hidden_shortcut


def test_padding_does_not_change_scores():
    model = tiny_model()
    q_diff = random_q_diff()
    scorer = SequenceScorer(model, q_diff, "logprob")
    alone = scorer.score([SEQUENCES[1][0]], [SEQUENCES[1][1]])
    batched = scorer.score([p for p, _ in SEQUENCES], [r for _, r in SEQUENCES])
    assert batched.rewards[1] == pytest.approx(alone.rewards[0], abs=1e-6)


def test_logprob_form_equals_cross_entropy_difference():
    torch.manual_seed(3)
    logits = torch.randn(2, 5, VOCAB)
    rng = np.random.default_rng(0)
    plus = torch.tensor(rng.dirichlet(np.ones(VOCAB)), dtype=torch.float32)
    minus = torch.tensor(rng.dirichlet(np.ones(VOCAB)), dtype=torch.float32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    reward = distribution_reward(logits, mask, plus - minus, "logprob")
    log_p = torch.log_softmax(logits, -1)
    cross_entropy = lambda q: -(log_p @ q).mean(-1)  # noqa: E731
    assert torch.allclose(reward, cross_entropy(minus) - cross_entropy(plus), atol=1e-6)


def test_logprob_form_is_shift_invariant_in_logits():
    torch.manual_seed(4)
    logits = torch.randn(3, VOCAB)
    q_diff = torch.tensor(random_q_diff(), dtype=torch.float32)
    shifted = logits + torch.randn(3, 1) * 10
    assert torch.allclose(
        token_rewards_logprob(logits, q_diff), token_rewards_logprob(shifted, q_diff), atol=1e-5
    )


def test_hidden_form_matches_logits_form():
    torch.manual_seed(5)
    weight = torch.randn(VOCAB, 16)
    hidden = torch.randn(4, 16)
    q_diff = torch.tensor(random_q_diff(), dtype=torch.float32)
    via_hidden = token_rewards_from_hidden(hidden, weight.T @ q_diff)
    via_logits = token_rewards_logprob(hidden @ weight.T, q_diff)
    assert torch.allclose(via_hidden, via_logits, atol=1e-5)


def test_prob_form_is_bounded_by_q_diff_range():
    torch.manual_seed(6)
    q_diff = torch.tensor(random_q_diff(), dtype=torch.float32)
    reward = distribution_reward(torch.randn(8, 4, VOCAB) * 5, torch.ones(8, 4), q_diff, "prob")
    assert torch.all(reward <= q_diff.max() + 1e-7)
    assert torch.all(reward >= q_diff.min() - 1e-7)


def test_masked_mean_ignores_masked_positions():
    values = torch.tensor([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert masked_mean(values, mask).tolist() == [1.5, 4.0]


def test_pair_scores():
    chosen, rejected = torch.tensor([0.3, -0.1]), torch.tensor([0.1, 0.2])
    assert torch.allclose(PAIR_SCORES["margin"](chosen, rejected), torch.tensor([0.2, -0.3]))
    assert torch.equal(PAIR_SCORES["chosen"](chosen, rejected), chosen)


def test_sequence_logprobs_sums_masked_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]))
    labels = torch.tensor([[0, 1]])
    total = sequence_logprobs(logits, labels, torch.tensor([[1, 1]]))
    assert total.item() == pytest.approx(np.log(0.5) + np.log(0.75))


def test_scorer_rejects_wrong_vocabulary_size():
    with pytest.raises(ValueError, match="Q_diff has 5 entries"):
        SequenceScorer(tiny_model(), np.zeros(5))
