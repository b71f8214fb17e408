"""Training data: the held-out split, the training subset, tokenisation and collation.

Order of operations, so that evaluation pairs never influence what is trained on:
1. load every pair of `config.data`;
2. draw `eval_size` pairs at random (seeded) as the held-out split;
3. select the training pairs from the rest (full, top/bottom/threshold by DEFT score, random);
4. tokenise with PairEncoder, the one definition of response tokens, and report cut pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from deft_core.distributions import TokenDistributions
from deft_core.encoding import EncodedPair, PairEncoder
from deft_core.errors import DeftError
from deft_core.filtering import Selection, select
from deft_core.loading import DataOptions, LoadedData, load_pairs
from deft_core.packing import PackedRows, pack_groups
from deft_core.pairs import PreferencePair
from deft_core.store import load_scores
from deft_core.training.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class SplitData:
    """Pairs of the held-out split and of the training subset, before tokenisation."""

    train: list[PreferencePair]
    eval: list[PreferencePair]
    pool: list[PreferencePair]  # every non-held-out pair, the set the selection chose from
    score_meta: dict | None = None  # metadata of the score file, when one was used
    score_table: object | None = None  # its pandas table, for reusing reference log-probs


@dataclass
class EncodedSplit:
    """Tokenised pairs of one split, with their ids and how many the length limit cut."""

    pairs: list[PreferencePair]
    encoded: list[EncodedPair]

    @property
    def truncated(self) -> int:
        return sum(e.truncated for e in self.encoded)


@dataclass
class Batch:
    """One micro-batch of B pairs, each packed into one row: prompt, chosen, rejected.

    The prompt runs through the model once for both responses (deft_core.packing). Sequence 2k of
    `packed` is pair k's chosen response and sequence 2k + 1 its rejected one.
    """

    packed: PackedRows
    indices: list[int] = field(default_factory=list)  # positions of the pairs in their split

    @property
    def pairs(self) -> int:
        return self.packed.sequences // 2

    @property
    def tokens(self) -> int:
        """Tokens the model runs for this batch, padding excluded."""
        return self.packed.tokens


def held_out_indices(count: int, eval_size: int, seed: int) -> np.ndarray:
    """Return the sorted indices of the held-out pairs, drawn with numpy's seeded generator."""
    if eval_size >= count:
        raise DeftError(f"eval_size {eval_size} leaves no training pairs out of {count}; lower eval_size")
    chosen = np.random.default_rng(seed).choice(count, size=eval_size, replace=False)
    return np.sort(chosen)


def split_pairs(data: LoadedData, config: TrainConfig) -> SplitData:
    """Set the held-out split aside, then select the training pairs from the rest."""
    pairs = data.pairs
    held = set(held_out_indices(len(pairs), config.eval_size, config.seed).tolist())
    eval_pairs = [p for i, p in enumerate(pairs) if i in held]
    pool = [p for i, p in enumerate(pairs) if i not in held]
    if config.selection == "full":
        return SplitData(pool, eval_pairs, pool)
    if config.selection == "random":
        keep = select(np.zeros(len(pool)), Selection("random", config.selection_value, config.seed))
        return SplitData([p for p, k in zip(pool, keep, strict=True) if k], eval_pairs, pool)

    table, meta = load_scores(config.scores)
    by_id = dict(zip(table["pair_id"], table["score"], strict=True))
    missing = [p.id for p in pool if p.id not in by_id]
    if missing:
        raise DeftError(
            f"score file {config.scores} has no scores for {len(missing)} of {len(pool)} pairs of "
            f"{config.data} (first: {missing[0]}); score this data with `deft score {config.data} --out FILE`"
        )
    scores = np.array([by_id[p.id] for p in pool], dtype=np.float64)
    keep = select(scores, Selection(config.selection, config.selection_value, config.seed))
    train = [p for p, k in zip(pool, keep, strict=True) if k]
    if not train:
        raise DeftError(f"selection {config.selection} {config.selection_value:g} kept no training pairs")
    return SplitData(train, eval_pairs, pool, meta, table)


def load_split(config: TrainConfig) -> SplitData:
    """Load config.data and split it; see the module docstring for the order of operations."""
    data = load_pairs(DataOptions(config.data, columns=dict(config.columns), limit=config.limit))
    split = split_pairs(data, config)
    unit = "%" if config.selection in ("top", "bottom", "random") else ""
    logger.info(
        "data %s: %d pairs, %d held out, %d selected for training (%s %g%s)",
        config.data,
        len(data.pairs),
        len(split.eval),
        len(split.train),
        config.selection,
        config.selection_value,
        unit,
    )
    return split


def training_template(config: TrainConfig, score_meta: dict | None) -> str:
    """Return the template to train with: the score file's, so that response tokens match its scores."""
    if score_meta is None:
        return config.template
    scored = score_meta["options"]["template"]
    if config.template not in ("auto", scored):
        raise DeftError(
            f"template {config.template!r} differs from the score file's template {scored!r}; "
            f"set template: {scored} or auto"
        )
    return scored


def encode_split(encoder: PairEncoder, pairs: list[PreferencePair], name: str) -> EncodedSplit:
    """Tokenise one split and log how many pairs the length limit cuts (never silently)."""
    split = EncodedSplit(pairs, encoder.encode_many(pairs))
    if split.truncated:
        logger.warning(
            "%s: max_length %d cuts %d of %d pairs (prompt start first, then response ends)",
            name,
            encoder.max_length,
            split.truncated,
            len(pairs),
        )
    return split


def guidance_distributions(
    encoder: PairEncoder, pool: list[PreferencePair], vocab_size: int, alpha: float
) -> TokenDistributions:
    """Compute Q+ and Q- over every non-held-out pair, so held-out text never shapes the guidance."""
    return TokenDistributions.from_encoded(encoder.encode_many(pool), encoder.tokenizer, vocab_size, alpha)


def collate(encoded: list[EncodedPair], indices: list[int], pad_id: int) -> Batch:
    """Pack each pair into one right-padded row: the prompt, then chosen, then rejected tokens.

    Response tokens are located by length, never by token id, so an end token equal to the pad
    token still counts as a response token.
    """
    packed = pack_groups([(e.prompt_ids, [e.chosen_ids, e.rejected_ids]) for e in encoded], pad_id)
    return Batch(packed, list(indices))


def epoch_order(count: int, epoch: int, seed: int) -> list[int]:
    """Return the seeded shuffle of pair positions for one epoch; resuming recomputes the same order."""
    return np.random.default_rng([seed, epoch]).permutation(count).tolist()


def micro_batch_indices(count: int, batch_size: int, micro_step: int, seed: int) -> list[int]:
    """Return the pair positions of the micro_step-th micro-batch of an endless seeded data stream.

    Each epoch is one shuffle; a micro-batch never spans two epochs, so the last one of an epoch
    may be smaller.
    """
    per_epoch = -(-count // batch_size)
    epoch, within = divmod(micro_step, per_epoch)
    order = epoch_order(count, epoch, seed)
    return order[within * batch_size : (within + 1) * batch_size]
