"""Packed rows (a prompt once, then all its responses) against separate prompt + response passes."""

from __future__ import annotations

import pytest
import torch

from deft_core.encoding import EncodedPair
from deft_core.packing import pack_groups
from deft_core.scorer import SequenceScorer
from deft_core.training.data import collate
from deft_core.training.dropout import LaneDropout, use_lane_dropout
from tests.test_rewards import random_q_diff, reference_reward, tiny_model

GROUPS = [
    ([5, 6, 7], [[8, 9, 10, 11], [30, 31]]),
    ([12, 13, 14, 15, 16, 17, 18], [[19, 20], [40, 41, 42, 43, 44, 45]]),
    ([21], [[22, 23, 24, 25, 26, 27, 28, 29], [50]]),
]


def test_layout_of_one_pair():
    packed = pack_groups([([1, 2, 3], [[4, 5], [6, 7, 8]])], pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    # Both responses continue the prompt's positions.
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    # The prompt's last token (column 2) predicts the first token of each response.
    assert packed.columns.tolist() == [2, 3, 2, 5, 6]
    assert packed.targets.tolist() == [4, 5, 6, 7, 8]
    assert packed.sequence.tolist() == [0, 0, 1, 1, 1]
    assert packed.lengths == [2, 3]
    assert packed.tokens == 8
    mask = packed.attention_mask[0, 0]
    # The rejected tokens (columns 5..7) see the prompt and themselves, never the chosen tokens.
    assert mask[5].tolist() == [True, True, True, False, False, True, False, False]
    assert mask[7].tolist() == [True, True, True, False, False, True, True, True]
    assert mask[4].tolist() == [True, True, True, True, True, False, False, False]


def test_one_response_per_row_needs_no_mask():
    packed = pack_groups([([1, 2], [[3]]), ([4], [[5, 6, 7]])], pad_id=0)
    assert packed.attention_mask is None
    assert "attention_mask" not in packed.model_inputs()


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="empty prompt"):
        pack_groups([([], [[1, 2]])], pad_id=0)


def test_empty_response_gets_no_predictions():
    packed = pack_groups([([1, 2], [[], [3, 4]])], pad_id=0)
    assert packed.lengths == [0, 2]
    assert packed.sequence.tolist() == [1, 1]


@pytest.mark.parametrize("form", ["logprob", "prob"])
def test_packed_scores_match_separate_sequences(form):
    model = tiny_model()
    q_diff = random_q_diff()
    scorer = SequenceScorer(model, q_diff, form, pad_id=0)
    result = scorer.score_groups(GROUPS, keep_token_rewards=True)
    index = 0
    for prompt, responses in GROUPS:
        for response in responses:
            expected_reward, expected_logp = reference_reward(model, prompt, response, q_diff, form)
            assert result.rewards[index] == pytest.approx(expected_reward, abs=1e-5)
            assert result.logps[index] == pytest.approx(expected_logp, abs=1e-4)
            assert len(result.token_rewards[index]) == len(response)
            index += 1


def test_packed_bf16_hidden_states_match():
    model = tiny_model().to(torch.bfloat16)
    decoder = model.get_decoder()
    packed = pack_groups(GROUPS, pad_id=0)
    with torch.no_grad():
        hidden = decoder(**packed.model_inputs(model)).last_hidden_state[packed.rows, packed.columns].float()
        separate = []
        for prompt, responses in GROUPS:
            for response in responses:
                states = decoder(input_ids=torch.tensor([prompt + response])).last_hidden_state[0]
                separate.append(states[len(prompt) - 1 : len(prompt) + len(response) - 1].float())
    separate = torch.cat(separate)
    assert torch.allclose(hidden, separate, atol=0.1, rtol=0.02)


@pytest.mark.parametrize("form", ["logprob", "prob"])
def test_training_batch_chosen_first(form):
    from deft_core.training.policy import PolicyForward

    model = tiny_model()
    q_diff = random_q_diff()
    pairs = [EncodedPair(p, r[0], r[1]) for p, r in GROUPS]
    batch = collate(pairs, [0, 1, 2], pad_id=0)
    assert batch.pairs == 3
    forward = PolicyForward(model, q_diff, form, pad_id=0)
    with torch.no_grad():
        result = forward(batch)
    for k, (prompt, (chosen, rejected)) in enumerate(GROUPS):
        chosen_reward, chosen_logp = reference_reward(model, prompt, chosen, q_diff, form)
        rejected_reward, rejected_logp = reference_reward(model, prompt, rejected, q_diff, form)
        assert float(result.logps[k]) == pytest.approx(chosen_logp, abs=1e-4)
        assert float(result.logps[3 + k]) == pytest.approx(rejected_logp, abs=1e-4)
        assert float(result.rewards[k]) == pytest.approx(chosen_reward, abs=1e-5)
        assert float(result.rewards[3 + k]) == pytest.approx(rejected_reward, abs=1e-5)
        assert int(result.tokens[k]) == len(chosen)
        assert int(result.tokens[3 + k]) == len(rejected)


def test_packed_gradients_match_separate_sequences():
    model = tiny_model()
    prompt, (chosen, rejected) = GROUPS[1]
    packed = pack_groups([(prompt, [chosen, rejected])], pad_id=0)
    logits = model(**packed.model_inputs(model)).logits[packed.rows, packed.columns]
    torch.log_softmax(logits, -1).gather(-1, packed.targets[:, None]).sum().backward()
    packed_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    for response in (chosen, rejected):
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
        predicting = logits[len(prompt) - 1 : len(prompt) + len(response) - 1]
        torch.log_softmax(predicting, -1).gather(-1, torch.tensor(response)[:, None]).sum().backward()
    separate_grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert torch.allclose(packed_grad, separate_grad, atol=1e-5)


def test_lane_dropout_rate_and_mean():
    torch.manual_seed(0)
    dropout = LaneDropout(0.05)
    x = torch.ones(1000, 1000)
    y = dropout(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.05, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)
    dropout.eval()
    assert dropout(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        LaneDropout(1.0)


def test_lane_dropout_follows_torch_seed():
    dropout = LaneDropout(0.3)
    x = torch.ones(64, 64)
    torch.manual_seed(7)
    first = dropout(x)
    torch.manual_seed(7)
    assert torch.equal(first, dropout(x))


def test_lane_dropout_replaces_lora_dropout():
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=2, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_model(), lora)
    assert use_lane_dropout(model) == 4  # 2 layers x 2 projections
    kinds = {type(d) for m in model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()}
    assert kinds == {LaneDropout}


def test_eager_attention_gets_an_additive_mask():
    model = tiny_model()
    model.set_attn_implementation("eager")
    q_diff = random_q_diff()
    result = SequenceScorer(model, q_diff, "logprob", pad_id=0).score_groups(GROUPS)
    prompt, (chosen, rejected) = GROUPS[1]
    for index, response in ((2, chosen), (3, rejected)):
        expected_reward, expected_logp = reference_reward(model, prompt, response, q_diff, "logprob")
        assert result.rewards[index] == pytest.approx(expected_reward, abs=1e-5)
        assert result.logps[index] == pytest.approx(expected_logp, abs=1e-4)


def test_flash_attention_rejected():
    model = tiny_model()
    model.config._attn_implementation = "flash_attention_2"
    packed = pack_groups(GROUPS, pad_id=0)
    with pytest.raises(ValueError, match="load it with attn_implementation='sdpa'"):
        packed.model_inputs(model)
