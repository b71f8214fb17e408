"""Comparison metrics as pure functions of texts, summed log-probabilities and token counts.

Inputs follow deft_core.encoding: a response's tokens are its text's tokens followed by the token
that ends the assistant turn, and `logps` are log-probabilities summed over exactly those tokens.
Each function is checked against hand-computed values in tests/test_compare.py.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Return sacrebleu's sentence BLEU (0 to 100) of one output against one reference.

    sacrebleu 2.6.0 defaults: 13a tokenisation, up to 4-grams, "exp" smoothing of zero n-gram
    matches, and effective order (n-gram orders longer than the output are left out).
    """
    import sacrebleu

    return float(sacrebleu.sentence_bleu(hypothesis, [reference]).score)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Return sacrebleu's corpus BLEU (0 to 100) of outputs against one reference each.

    n-gram matches and totals are summed over all outputs before the precisions are taken, and
    the brevity penalty uses the summed lengths, so this is not the mean of sentence BLEU.
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} outputs but {len(references)} references")
    if not hypotheses:
        raise ValueError("corpus BLEU needs at least one output")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def mean_token_logprobs(logps: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Return each response's mean log-probability per token. Shapes: (N,), (N,) -> (N,)."""
    return np.asarray(logps, dtype=np.float64) / np.maximum(np.asarray(tokens, dtype=np.float64), 1.0)


def implicit_rewards(policy_logps: np.ndarray, reference_logps: np.ndarray, beta: float) -> np.ndarray:
    """Return the DPO implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) of each response.

    Both log-probabilities are summed over the response tokens. Shapes: (N,), (N,) -> (N,).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return beta * (np.asarray(policy_logps, dtype=np.float64) - np.asarray(reference_logps, dtype=np.float64))


def preference_accuracy(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> float:
    """Return the share of pairs whose chosen response scores strictly higher than the rejected one.

    A tie counts as a miss, as in TRL's rewards/accuracies, so an untrained adapter (every implicit
    reward 0) scores 0. Shapes: (N,), (N,) -> scalar; NaN for no pairs.
    """
    chosen = np.asarray(chosen_scores, dtype=np.float64)
    rejected = np.asarray(rejected_scores, dtype=np.float64)
    if chosen.shape != rejected.shape:
        raise ValueError(f"{chosen.shape[0]} chosen scores but {rejected.shape[0]} rejected scores")
    if chosen.size == 0:
        return math.nan
    return float(np.mean(chosen > rejected))


def perplexity(logps: np.ndarray, tokens: np.ndarray) -> float:
    """Return exp of the mean token negative log-likelihood over all responses together.

    perplexity = exp(-sum_i logps_i / sum_i T_i): every token weighs the same, so a long response
    counts more than a short one. Shapes: (N,), (N,) -> scalar; NaN when there are no tokens.
    """
    total_tokens = float(np.sum(tokens))
    if total_tokens <= 0:
        return math.nan
    return math.exp(-float(np.sum(np.asarray(logps, dtype=np.float64))) / total_tokens)


def word_count(text: str) -> int:
    """Return the number of whitespace-separated words."""
    return len(text.split())


def finite_mean(values: Sequence[float]) -> float:
    """Return the mean of the finite values; NaN when there are none."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else math.nan


WORD_OR_LINE_BREAK = re.compile(r"\n|[^\s]+")
DiffOp = Literal["equal", "delete", "insert", "replace"]


@dataclass(frozen=True)
class DiffSegment:
    """A run of words that two texts share (equal) or where they differ."""

    op: DiffOp
    before: tuple[str, ...]  # words of the first text in this run
    after: tuple[str, ...]  # words of the second text in this run


def diff_words(text: str) -> list[str]:
    """Split text into its whitespace-separated words, with each line break as a word of its own."""
    return WORD_OR_LINE_BREAK.findall(text)


def word_diff(before: str, after: str) -> list[DiffSegment]:
    """Split two texts into words (diff_words) and return difflib's word-level diff.

    Concatenating `before` of every segment gives the first text's words, and `after` the second's.
    Line breaks are words too, so a rendered diff keeps the text's lines. difflib's junk heuristic
    is off, so frequent words still match.
    """
    old, new = diff_words(before), diff_words(after)
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [
        DiffSegment(op, tuple(old[i1:i2]), tuple(new[j1:j2]))  # type: ignore[arg-type]
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
    ]
