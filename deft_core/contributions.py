"""Per-token contributions to the distribution reward of one pair, for the dashboard's pair view.

The reward of a response with T tokens is the mean of its per-token rewards, so token t
contributes token_reward[t] / T, and the contributions of a response sum to its reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deft_core.encoding import PairEncoder
from deft_core.models import LoadedModel
from deft_core.pairs import PreferencePair
from deft_core.scorer import SequenceScorer


@dataclass
class ResponseTokens:
    """Decoded tokens of one response with their contributions; `reward` is their sum."""

    pieces: list[str]
    contributions: np.ndarray  # (T,) float
    reward: float


def decode_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Decode each token on its own, so that the pieces line up one-to-one with the ids."""
    return tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)


def pair_contributions(
    loaded: LoadedModel,
    pair: PreferencePair,
    q_diff: np.ndarray,
    reward_form: str,
    template: str,
    max_length: int,
) -> tuple[ResponseTokens, ResponseTokens]:
    """Score one pair's chosen and rejected responses and return their per-token contributions."""
    encoder = PairEncoder(loaded.tokenizer, template, max_length)
    encoded = encoder.encode(pair)
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    scorer = SequenceScorer(loaded.model, q_diff, reward_form, pad_id)
    # The same packed pass as scoring, so the contributions add up to the score table's rewards.
    result = scorer.score_groups(
        [(encoded.prompt_ids, [encoded.chosen_ids, encoded.rejected_ids])], keep_token_rewards=True
    )
    sides = []
    for index, ids in enumerate((encoded.chosen_ids, encoded.rejected_ids)):
        per_token = np.asarray(result.token_rewards[index], dtype=float)
        contributions = per_token / max(len(ids), 1)
        sides.append(
            ResponseTokens(decode_pieces(loaded.tokenizer, ids), contributions, float(result.rewards[index]))
        )
    return sides[0], sides[1]
