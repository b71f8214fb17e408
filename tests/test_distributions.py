"""Token distributions Q+, Q- and Q_diff."""

from __future__ import annotations

import numpy as np
import pytest

from deft_core.distributions import TokenDistributions, count_tokens, readable_token
from deft_core.errors import DeftError


class FakeTokenizer:
    """The two tokenizer attributes that the distributions read."""

    all_special_ids = (0, 1)

    def __len__(self) -> int:
        return 8

    def decode(self, ids: list[int]) -> str:
        return {2: " a", 3: "b\n", 4: "\tc"}.get(ids[0], f"<{ids[0]}>")


CHOSEN = [[2, 2, 3, 1], [4, 0]]
REJECTED = [[3, 3, 5], [6, 1]]


def build(alpha: float = 0.0) -> TokenDistributions:
    return TokenDistributions.from_sequences(CHOSEN, REJECTED, FakeTokenizer(), vocab_size=10, alpha=alpha)


def test_counts_exclude_special_and_unused_ids():
    dist = build()
    assert dist.chosen_counts.tolist() == [0, 0, 2, 1, 1, 0, 0, 0, 0, 0]
    assert dist.rejected_counts.tolist() == [0, 0, 0, 2, 0, 1, 1, 0, 0, 0]
    assert set(dist.excluded_ids.tolist()) == {0, 1, 8, 9}


@pytest.mark.parametrize("alpha", [0.0, 0.5, 3.0])
def test_q_diff_sums_to_zero(alpha):
    dist = build(alpha)
    assert dist.q_plus.sum() == pytest.approx(1.0)
    assert dist.q_minus.sum() == pytest.approx(1.0)
    assert abs(dist.q_diff.sum()) < 1e-15


def test_q_values_by_hand():
    dist = build()
    assert dist.q_plus[2] == pytest.approx(2 / 4)
    assert dist.q_minus[3] == pytest.approx(2 / 4)
    assert dist.q_diff[3] == pytest.approx(1 / 4 - 2 / 4)


def test_smoothing_by_hand():
    dist = build(alpha=1.0)
    # six usable ids (2..7), four chosen tokens: (c + 1) / (4 + 6)
    assert dist.q_plus[7] == pytest.approx(1 / 10)
    assert dist.q_plus[2] == pytest.approx(3 / 10)
    assert dist.q_plus[0] == 0.0


def test_round_trip_through_dict():
    dist = build(alpha=0.25)
    again = TokenDistributions.from_dict(dist.to_dict())
    assert np.array_equal(again.q_diff, dist.q_diff)
    assert again.alpha == 0.25


def test_top_tokens_are_readable():
    rows = build().top_tokens(FakeTokenizer(), "q_diff", n=2)
    assert rows[0]["token"] == "·a"
    assert rows[0]["chosen_count"] == 2
    lowest = build().top_tokens(FakeTokenizer(), "q_diff", n=1, lowest=True)
    assert lowest[0]["token"] == "b↵"


def test_readable_token_shows_whitespace():
    assert readable_token(FakeTokenizer(), 4) == "→c"


def test_empty_counts_rejected():
    with pytest.raises(DeftError, match="no chosen response tokens"):
        TokenDistributions.from_sequences([[0, 1]], [[2]], FakeTokenizer(), vocab_size=10)


def test_negative_alpha_rejected():
    with pytest.raises(DeftError, match="alpha must be >= 0"):
        build(alpha=-1)


def test_count_tokens_ignores_out_of_range_tail():
    assert count_tokens([[1, 1, 2]], 3).tolist() == [0, 2, 1]
