"""The check before training: the exact tokens of one rendered pair, and warnings about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deft_core.encoding import EncodedPair
from deft_core.training.data import collate


@dataclass
class TokenCheck:
    """The tokens of one pair's chosen sequence and the problems found in it."""

    rows: list[dict[str, Any]]  # one per token: position, id, text, part ("prompt" or "response")
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return one line per token, then the warnings (or a line saying there are none)."""
        text = [f"{r['position']:>5} {r['id']:>7} {r['part']:<8} {r['text']!r}" for r in self.rows]
        text += [f"WARNING: {w}" for w in self.warnings] or ["no BOS/EOS problems found"]
        return text


def check_tokens(tokenizer: Any, pair: EncodedPair, end_ids: list[int]) -> TokenCheck:
    """List the chosen sequence's tokens and flag a doubled BOS/EOS or an end token lost to padding."""
    ids = pair.prompt_ids + pair.chosen_ids
    rows = [
        {
            "position": position,
            "id": token_id,
            "text": tokenizer.decode([token_id]),
            "part": "prompt" if position < len(pair.prompt_ids) else "response",
        }
        for position, token_id in enumerate(ids)
    ]
    warnings = doubled_special_warnings(tokenizer, ids, pair)
    warnings += padding_warnings(tokenizer, pair, end_ids)
    return TokenCheck(rows, warnings)


def doubled_special_warnings(tokenizer: Any, ids: list[int], pair: EncodedPair) -> list[str]:
    warnings = []
    bos = tokenizer.bos_token_id
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        warnings.append(f"doubled BOS: the sequence starts with {tokenizer.bos_token!r} twice")
    eos = tokenizer.eos_token_id
    reply = pair.chosen_ids
    if eos is not None and len(reply) > 1 and reply[-1] == eos and reply[-2] == eos:
        warnings.append(f"doubled EOS: the response ends with {tokenizer.eos_token!r} twice")
    return warnings


def padding_warnings(tokenizer: Any, pair: EncodedPair, end_ids: list[int]) -> list[str]:
    """Flag a response whose end token is cut off or would fall outside the loss mask."""
    warnings = []
    if pair.response_cut:
        warnings.append(
            f"max_length cut {pair.response_cut} tokens from the response, so its end token is missing"
        )
    elif end_ids and pair.chosen_ids[-len(end_ids) :] != end_ids:
        warnings.append("the response does not end with the end-of-turn token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Pad the pair next to a longer copy of itself, as in a real batch, and check the mask.
    longer = EncodedPair(pair.prompt_ids, pair.chosen_ids + [pad_id] * 3, pair.rejected_ids)
    packed = collate([pair, longer], [0, 1], pad_id).packed
    # Sequence 0 is the pair's chosen response: the loss must predict each of its tokens, the last included.
    predicted = packed.targets[packed.sequence == 0].tolist()
    if predicted != list(pair.chosen_ids):
        warnings.append("EOS hidden by padding: the last response token is outside the loss mask")
    return warnings
