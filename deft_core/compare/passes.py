"""Teacher-forced passes of a compared model: held-out pair statistics and the reward of its outputs.

Both go through deft_core.scorer.SequenceScorer on sequences built by PairEncoder, so response
tokens, log-probabilities and distribution rewards mean here what they mean in scoring and training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deft_core.compare.candidates import Candidate
from deft_core.compare.metrics import implicit_rewards, mean_token_logprobs, perplexity, preference_accuracy
from deft_core.encoding import EncodedPair, PairEncoder
from deft_core.errors import DeftError
from deft_core.pairs import Message, PreferencePair
from deft_core.progress import ProgressCallback, ProgressTracker
from deft_core.scorer import SequenceScorer
from deft_core.scoring import run_scorer


@dataclass
class PairStatistics:
    """Teacher-forced results on held-out pairs. Arrays have shape (N,)."""

    chosen_scores: np.ndarray  # implicit reward (a run) or mean token log-prob (the base model)
    rejected_scores: np.ndarray
    chosen_means: np.ndarray  # mean token log-prob of y_w under the evaluated model
    rejected_means: np.ndarray
    chosen_logps: np.ndarray  # log pi(y_w | x) summed over response tokens
    chosen_tokens: np.ndarray

    @property
    def preference_accuracy(self) -> float:
        return preference_accuracy(self.chosen_scores, self.rejected_scores)

    @property
    def logprob_accuracy(self) -> float:
        """Return the share of pairs whose chosen response has the higher mean token log-prob."""
        return preference_accuracy(self.chosen_means, self.rejected_means)

    @property
    def perplexity(self) -> float:
        return perplexity(self.chosen_logps, self.chosen_tokens)


def start_stage(
    stage: str, total: int, progress: ProgressCallback | None, unit: str = "pairs"
) -> ProgressTracker:
    """Return a tracker for one stage, after reporting it at 0 done so that its bar shows at once."""
    tracker = ProgressTracker(stage, total, progress, unit=unit)
    tracker.advance(0)
    return tracker


def make_scorer(candidate: Candidate, q_diff: np.ndarray) -> SequenceScorer:
    """Build the scorer of the candidate's model with the logprob reward form."""
    tokenizer = candidate.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        return SequenceScorer(candidate.model, q_diff, "logprob", pad_id)
    except ValueError as error:
        raise DeftError(
            f"{candidate.label}: {error}; compute Q_diff with the tokenizer of {candidate.loaded.spec}"
        ) from error


def pair_statistics(
    candidate: Candidate,
    scorer: SequenceScorer,
    encoded: list[EncodedPair],
    batch_size: int,
    beta: float,
    progress: ProgressCallback | None = None,
) -> PairStatistics:
    """Score both responses of every pair with the candidate (and, for a run, with pi_ref).

    A run's pair scores are DPO implicit rewards beta * (log pi - log pi_ref). The base model has no
    reference, so its scores are mean token log-probabilities, which training also compares in its
    eval/preference_accuracy metric.
    """
    tracker = start_stage(f"{candidate.label}: scoring pairs", len(encoded), progress)
    _, logps, counts = run_scorer(scorer, encoded, batch_size, tracker)
    chosen_means = mean_token_logprobs(logps[:, 0], counts[:, 0])
    rejected_means = mean_token_logprobs(logps[:, 1], counts[:, 1])
    if candidate.has_adapter:
        reference_tracker = start_stage(f"{candidate.label}: reference pass", len(encoded), progress)
        with candidate.reference():
            _, reference_logps, _ = run_scorer(scorer, encoded, batch_size, reference_tracker)
        chosen = implicit_rewards(logps[:, 0], reference_logps[:, 0], beta)
        rejected = implicit_rewards(logps[:, 1], reference_logps[:, 1], beta)
    else:
        chosen, rejected = chosen_means, rejected_means
    return PairStatistics(chosen, rejected, chosen_means, rejected_means, logps[:, 0], counts[:, 0])


def encode_outputs(encoder: PairEncoder, prompts: list[list[Message]], texts: list[str]) -> list[EncodedPair]:
    """Tokenise prompt + output exactly as a pair's chosen response is tokenised (chosen_ids)."""
    return encoder.encode_many(
        [PreferencePair("", prompt, text, text) for prompt, text in zip(prompts, texts, strict=True)]
    )


def output_rewards(
    candidate: Candidate,
    scorer: SequenceScorer,
    encoded: list[EncodedPair],
    batch_size: int,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Return the distribution reward r(x, y) of each output, computed by the base model. Shape: (N,).

    For a run the adapter is off during this pass, so the outputs of every compared model are
    scored by the same base model and their rewards are on one scale.
    """
    tracker = start_stage(f"{candidate.label}: scoring outputs", len(encoded), progress, "outputs")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prompt_ids) + len(encoded[i].chosen_ids))
    rewards = np.full(len(encoded), np.nan)
    with candidate.reference():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            result = scorer.score(
                [encoded[i].prompt_ids for i in batch], [encoded[i].chosen_ids for i in batch]
            )
            rewards[batch] = result.rewards
            tracker.advance(len(batch), tokens=int(result.token_counts.sum()))
    return rewards
