"""Token distributions of chosen and rejected responses, and their discrepancy Q_diff.

With token counts c+(v) over all chosen responses and c-(v) over all rejected responses, and
additive smoothing alpha >= 0 over the vocabulary V' (every id except special tokens):

    Q+(v) = (c+(v) + alpha) / sum_{u in V'} (c+(u) + alpha)
    Q-(v) = (c-(v) + alpha) / sum_{u in V'} (c-(u) + alpha)
    Q_diff(v) = Q+(v) - Q-(v)

Special-token ids get Q+ = Q- = 0, so Q_diff sums to exactly 0 (up to float64 rounding).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deft_core.errors import DeftError


def excluded_token_ids(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Return the ids left out of the distributions: special tokens and ids the tokenizer never emits."""
    excluded = set(tokenizer.all_special_ids)
    excluded.update(range(len(tokenizer), vocab_size))
    return np.array(sorted(i for i in excluded if 0 <= i < vocab_size), dtype=np.int64)


def count_tokens(sequences: Iterable[list[int]], vocab_size: int) -> np.ndarray:
    """Count token ids over many sequences. Shape: (vocab_size,), int64."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids in sequences:
        counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    return counts


@dataclass
class TokenDistributions:
    """Token counts of chosen and rejected responses and the distributions derived from them."""

    chosen_counts: np.ndarray  # (V,) int64
    rejected_counts: np.ndarray  # (V,) int64
    excluded_ids: np.ndarray  # ids with Q = 0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise DeftError(f"smoothing alpha must be >= 0, got {self.alpha}")
        self.chosen_counts = np.asarray(self.chosen_counts, dtype=np.int64).copy()
        self.rejected_counts = np.asarray(self.rejected_counts, dtype=np.int64).copy()
        self.chosen_counts[self.excluded_ids] = 0
        self.rejected_counts[self.excluded_ids] = 0
        for name, counts in (("chosen", self.chosen_counts), ("rejected", self.rejected_counts)):
            if counts.sum() == 0 and self.alpha == 0:
                raise DeftError(f"no {name} response tokens to count; the dataset is empty")

    @classmethod
    def from_sequences(
        cls,
        chosen: Iterable[list[int]],
        rejected: Iterable[list[int]],
        tokenizer: Any,
        vocab_size: int,
        alpha: float = 0.0,
    ) -> TokenDistributions:
        excluded = excluded_token_ids(tokenizer, vocab_size)
        return cls(count_tokens(chosen, vocab_size), count_tokens(rejected, vocab_size), excluded, alpha)

    @classmethod
    def from_encoded(
        cls, encoded: Iterable, tokenizer: Any, vocab_size: int, alpha: float = 0.0
    ) -> TokenDistributions:
        """Count the response tokens of encoded pairs (deft_core.encoding.EncodedPair)."""
        encoded = list(encoded)
        return cls.from_sequences(
            (e.chosen_ids for e in encoded), (e.rejected_ids for e in encoded), tokenizer, vocab_size, alpha
        )

    @property
    def vocab_size(self) -> int:
        return len(self.chosen_counts)

    def normalise(self, counts: np.ndarray) -> np.ndarray:
        smoothed = counts.astype(np.float64) + self.alpha
        smoothed[self.excluded_ids] = 0.0
        return smoothed / smoothed.sum()

    @property
    def q_plus(self) -> np.ndarray:
        return self.normalise(self.chosen_counts)

    @property
    def q_minus(self) -> np.ndarray:
        return self.normalise(self.rejected_counts)

    @property
    def q_diff(self) -> np.ndarray:
        """Return Q+ - Q-. Shape: (V,), float64, sums to 0."""
        return self.q_plus - self.q_minus

    def top_tokens(
        self, tokenizer: Any, which: str = "q_diff", n: int = 20, lowest: bool = False
    ) -> list[dict]:
        """Return the n highest (or lowest) entries of one distribution, with readable token text."""
        values = {"q_plus": self.q_plus, "q_minus": self.q_minus, "q_diff": self.q_diff}[which]
        order = np.argsort(values, kind="stable")
        order = order[:n] if lowest else order[::-1][:n]
        return [
            {
                "id": int(i),
                "token": readable_token(tokenizer, int(i)),
                "value": float(values[i]),
                "chosen_count": int(self.chosen_counts[i]),
                "rejected_count": int(self.rejected_counts[i]),
            }
            for i in order
        ]

    def to_dict(self) -> dict:
        """Store the counts sparsely; Q+, Q- and Q_diff are rebuilt exactly from them."""
        return {
            "alpha": self.alpha,
            "vocab_size": self.vocab_size,
            "excluded_ids": self.excluded_ids.tolist(),
            "chosen_counts": sparse(self.chosen_counts),
            "rejected_counts": sparse(self.rejected_counts),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TokenDistributions:
        size = int(data["vocab_size"])
        return cls(
            dense(data["chosen_counts"], size),
            dense(data["rejected_counts"], size),
            np.asarray(data["excluded_ids"], dtype=np.int64),
            float(data["alpha"]),
        )


def sparse(counts: np.ndarray) -> dict[str, int]:
    nonzero = np.flatnonzero(counts)
    return {str(int(i)): int(counts[i]) for i in nonzero}


def dense(entries: dict[str, int], size: int) -> np.ndarray:
    counts = np.zeros(size, dtype=np.int64)
    for key, value in entries.items():
        counts[int(key)] = value
    return counts


def readable_token(tokenizer: Any, token_id: int) -> str:
    """Decode one token with its whitespace made visible: "·" for a space, "↵" for a newline."""
    text = tokenizer.decode([token_id])
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")
