"""Score a loaded dataset with the DEFT distribution reward and build its score table."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pandas as pd

from deft_core import distributed, store
from deft_core.distributions import TokenDistributions
from deft_core.encoding import TEMPLATES, EncodedPair, PairEncoder
from deft_core.errors import DeftError
from deft_core.loading import LoadedData
from deft_core.models import LoadedModel
from deft_core.progress import ProgressCallback, ProgressTracker
from deft_core.rewards import PAIR_SCORES, TOKEN_REWARDS
from deft_core.scorer import SequenceScorer

logger = logging.getLogger(__name__)

# Bump when a change alters score values, so that older cache entries are not reused.
SCORE_SCHEMA = 2


@dataclass
class ScoreOptions:
    """Options of one scoring run; every field is saved with the scores."""

    reward_form: Literal["logprob", "prob"] = "logprob"  # r = mean_t Q_diff . log p_t, or . p_t
    pair_score: Literal["margin", "chosen"] = "margin"  # s = r(chosen) - r(rejected), or r(chosen)
    template: Literal["auto", "chat", "raw"] = "auto"  # prompt rendering: chat template or HH raw text
    alpha: float = 0.0  # additive smoothing of the token distributions
    max_length: int = 1024  # tokens of prompt + response; longer pairs are cut and flagged
    batch_size: int = 16  # sequences per forward pass (two per pair; pairs share their prompt)

    def __post_init__(self) -> None:
        problems = []
        if self.reward_form not in TOKEN_REWARDS:
            problems.append(
                f"reward_form must be one of {', '.join(TOKEN_REWARDS)}, got {self.reward_form!r}"
            )
        if self.pair_score not in PAIR_SCORES:
            problems.append(f"pair_score must be one of {', '.join(PAIR_SCORES)}, got {self.pair_score!r}")
        if self.template not in TEMPLATES:
            problems.append(f"template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if self.alpha < 0:
            problems.append(f"alpha must be >= 0, got {self.alpha}")
        if self.max_length < 8:
            problems.append(f"max_length must be at least 8, got {self.max_length}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if problems:
            raise DeftError("; ".join(problems))


@dataclass
class ScoreResult:
    """The score table (one row per pair), its metadata, and whether it came from the cache."""

    table: pd.DataFrame
    meta: dict
    from_cache: bool = False

    @property
    def distributions(self) -> TokenDistributions:
        return TokenDistributions.from_dict(self.meta["distributions"])


def encode_data(data: LoadedData, encoder: PairEncoder) -> list[EncodedPair]:
    """Tokenise every pair, flag the ones the length limit cuts, and record them in the audit."""
    encoded = encoder.encode_many(data.pairs)
    for pair, item in zip(data.pairs, encoded, strict=True):
        if item.truncated and "truncated" not in pair.flags:
            pair.flags.append("truncated")
            data.audit.add(
                "truncated",
                pair.line,
                f"cut {item.prompt_cut} prompt and {item.response_cut} response tokens "
                f"to fit max_length {encoder.max_length}",
            )
    return encoded


def build_distributions(encoded: list[EncodedPair], loaded: LoadedModel, alpha: float) -> TokenDistributions:
    vocab_size = loaded.model.get_output_embeddings().weight.shape[0]
    return TokenDistributions.from_encoded(encoded, loaded.tokenizer, vocab_size, alpha)


ScoredSequence = tuple[int, int, float, float, int]  # (pair index, side, reward, log-prob, tokens)


def pairs_per_batch(batch_size: int) -> int:
    """Pairs per forward pass for a batch size counted in sequences (each pair is two sequences)."""
    return max(1, batch_size // 2)


def batch_plan(encoded: list[EncodedPair], batch_size: int) -> list[list[int]]:
    """Split the pairs into batches of similar packed length, longest first; return pair indices.

    Each pair is packed into one row (prompt, chosen, rejected; see deft_core.packing), so a batch
    of `batch_size` sequences contains batch_size // 2 pairs. The plan depends only on its inputs, so
    every process of a launch builds the same one.
    """
    order = sorted(range(len(encoded)), key=lambda i: packed_length(encoded[i]), reverse=True)
    size = pairs_per_batch(batch_size)
    return [order[start : start + size] for start in range(0, len(order), size)]


def packed_length(item: EncodedPair) -> int:
    return len(item.prompt_ids) + len(item.chosen_ids) + len(item.rejected_ids)


def run_scorer(
    scorer: SequenceScorer, encoded: list[EncodedPair], batch_size: int, progress: ProgressTracker
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score both responses of every pair in length-sorted batches, the prompt computed once per pair.

    Under a launch of several processes, process r scores batches r, r + N, r + 2N, ... of the
    plan, each exactly as a single process would, and every process receives all results.
    Returns rewards, log-probabilities and response token counts, each of shape (pairs, 2)
    with column 0 for chosen and column 1 for rejected.
    """
    plan = batch_plan(encoded, batch_size)
    numbers = distributed.shares(len(plan))
    if distributed.world_size() > 1:
        # Progress counts this process's share of the pairs.
        progress.total = sum(len(plan[number]) for number in numbers)
    scored: list[ScoredSequence] = []
    for number in numbers:
        batch = plan[number]
        items = [encoded[i] for i in batch]
        result = scorer.score_groups([(e.prompt_ids, [e.chosen_ids, e.rejected_ids]) for e in items])
        for k, index in enumerate(batch):
            for side in (0, 1):
                s = 2 * k + side
                scored.append((index, side, result.rewards[s], result.logps[s], result.token_counts[s]))
        progress.advance(len(batch), tokens=sum(packed_length(e) for e in items))
    if distributed.world_size() > 1:
        # Plain floats pickle compactly; float32 -> float is exact, as is the array assignment below.
        local = [(i, side, float(r), float(lp), int(c)) for i, side, r, lp, c in scored]
        scored = distributed.gather_objects(local)

    rewards = np.full((len(encoded), 2), np.nan)
    logps = np.full((len(encoded), 2), np.nan)
    counts = np.zeros((len(encoded), 2), dtype=np.int64)
    for index, side, reward, logp, count in scored:
        rewards[index, side] = reward
        logps[index, side] = logp
        counts[index, side] = count
    return rewards, logps, counts


def score_identity(
    data: LoadedData, loaded: LoadedModel, options: ScoreOptions, template: str, reference: LoadedData | None
) -> dict:
    """Return everything that determines the scores; its hash is the cache key."""
    computed = {k: v for k, v in asdict(options).items() if k != "batch_size"}
    return {
        "schema": SCORE_SCHEMA,
        "model": loaded.model_hash,
        "dtype": str(loaded.dtype),
        "device": loaded.device.type,
        "data": data.fingerprint,
        "reference": reference.fingerprint if reference is not None else None,
        "options": {**computed, "template": template},
    }


def score_data(
    data: LoadedData,
    loaded: LoadedModel,
    options: ScoreOptions | None = None,
    progress: ProgressCallback | None = None,
    reference: LoadedData | None = None,
    use_cache: bool = True,
) -> ScoreResult:
    """Compute Q_diff on the data (or on `reference`) and score every pair with the model.

    Results are cached under a key of the model, data and options: the same request returns
    the cached table at once. Under a launch of several processes (deft_core.distributed) the
    batches are split between them and every process returns the merged result; only the main
    process reports progress and writes the cache entry.
    """
    from deft_core import __version__

    options = options or ScoreOptions()
    encoder = PairEncoder(loaded.tokenizer, options.template, options.max_length)
    encoded = encode_data(data, encoder)
    identity = score_identity(data, loaded, options, encoder.template, reference)
    key = store.cache_key(identity)
    if use_cache and (cached := cached_on_main(key)) is not None:
        logger.info("scores found in cache %s", key)
        return ScoreResult(cached[0], cached[1], from_cache=True)

    reference_encoded = encode_data(reference, encoder) if reference is not None else encoded
    distributions = build_distributions(reference_encoded, loaded, options.alpha)
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    scorer = SequenceScorer(loaded.model, distributions.q_diff, options.reward_form, pad_id)

    started = time.perf_counter()
    callback = progress if distributed.is_main() else None
    tracker = ProgressTracker("scoring", total=len(encoded), callback=callback)
    rewards, logps, counts = run_scorer(scorer, encoded, options.batch_size, tracker)
    seconds = time.perf_counter() - started
    tokens = tracker.tokens if distributed.world_size() == 1 else sequence_tokens(encoded)

    table = build_table(data, encoded, rewards, logps, counts, options.pair_score)
    meta = {
        "deft_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cache_key": key,
        "identity": identity,
        "model": loaded.describe(),
        "data": {
            "options": data.options.to_dict(),
            "source": data.source.describe(),
            "source_kind": data.source.kind,
            "source_path": data.source.path,
            "format": data.audit.format,
            "fingerprint": data.fingerprint,
            "pairs": len(data.pairs),
            "audit": data.audit.to_dict(),
        },
        "reference": reference.source.describe() if reference is not None else None,
        "options": {**asdict(options), "template": encoder.template},
        "distributions": distributions.to_dict(),
        "timing": {
            "seconds": round(seconds, 3),
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "pairs_per_s": round(len(encoded) / seconds, 3) if seconds else None,
        },
    }
    if use_cache and distributed.is_main():
        store.store_in_cache(key, table, meta)
    return ScoreResult(table, meta)


def cached_on_main(key: str) -> tuple[pd.DataFrame, dict] | None:
    """Look the key up in the main process's cache and hand the entry (or None) to every process.

    Under a launch the processes may run on machines with different deft homes, so one lookup
    decides for all of them.
    """
    cached = store.cached_scores(key) if distributed.is_main() else None
    return distributed.broadcast_object(cached)


def sequence_tokens(encoded: list[EncodedPair]) -> int:
    """Count the tokens the model runs: each pair's prompt once, then both responses."""
    return sum(packed_length(e) for e in encoded)


def build_table(
    data: LoadedData,
    encoded: list[EncodedPair],
    rewards: np.ndarray,
    logps: np.ndarray,
    counts: np.ndarray,
    pair_score: str,
) -> pd.DataFrame:
    import torch

    score = PAIR_SCORES[pair_score](torch.from_numpy(rewards[:, 0]), torch.from_numpy(rewards[:, 1])).numpy()
    return pd.DataFrame(
        {
            "pair_id": [p.id for p in data.pairs],
            "line": [p.line for p in data.pairs],
            "prompt_tokens": [len(e.prompt_ids) for e in encoded],
            "chosen_tokens": counts[:, 0],
            "rejected_tokens": counts[:, 1],
            "reward_chosen": rewards[:, 0],
            "reward_rejected": rewards[:, 1],
            "score": score,
            "logp_chosen": logps[:, 0],
            "logp_rejected": logps[:, 1],
            "flags": [",".join(p.flags) for p in data.pairs],
        }
    )
