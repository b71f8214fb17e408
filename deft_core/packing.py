"""Pack a prompt and all its responses into one row, so that the prompt runs through the model once.

A row has the prompt, then each response after it, then padding on the right. Position ids
restart after the prompt for every response, and the attention mask lets a response token see
the prompt and the earlier tokens of its own response only. Every response token therefore gets
the same hidden state as in its own prompt + response sequence (up to floating-point rounding),
while the prompt's tokens are computed once instead of once per response.

For a preference pair this removes one copy of the prompt: on the HH-RLHF test split prompts are
about 38% of the tokens of the two separate sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Segment id of padding columns; the prompt is segment 0 and response i is segment i + 1.
PAD_SEGMENT = -1


@dataclass
class PackedRows:
    """A batch of packed rows and where its response tokens are predicted.

    Sequence s is the s-th (prompt, response) sequence in the order the groups and their
    responses were given. Predictions are listed sequence by sequence, in token order.
    """

    input_ids: torch.Tensor  # (B, L), right-padded
    position_ids: torch.Tensor  # (B, L)
    # (B, 1, L, L) bool, True where a query token may attend a key token; None when every row has
    # one response, where the causal mask alone is right (padding comes after every real token).
    attention_mask: torch.Tensor | None
    rows: torch.Tensor  # (N,) row of the position predicting each response token
    columns: torch.Tensor  # (N,) column of that position
    targets: torch.Tensor  # (N,) the response token it predicts
    sequence: torch.Tensor  # (N,) index of the sequence the token belongs to
    lengths: list[int]  # response tokens of each sequence
    tokens: int  # real tokens in the rows: every prompt once, then every response

    @property
    def sequences(self) -> int:
        return len(self.lengths)

    def model_inputs(self, model: torch.nn.Module | None = None) -> dict:
        """Keyword arguments for a transformers decoder; without a mask, attention runs its causal kernel.

        A mask passed as 4D goes to the attention function as it is, so its form follows the
        model's attention implementation: booleans for "sdpa", additive floats (0 or the dtype's
        minimum) for "eager". Other implementations (flash-attention kernels) take no such mask.
        """
        if self.attention_mask is None:
            return {"input_ids": self.input_ids, "use_cache": False}
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": mask_for(model, self.attention_mask),
            "use_cache": False,
        }

    def to(self, device: torch.device) -> PackedRows:
        moved = {name: getattr(self, name) for name in TENSOR_FIELDS}
        moved = {name: value.to(device) if value is not None else None for name, value in moved.items()}
        return PackedRows(**moved, lengths=self.lengths, tokens=self.tokens)


TENSOR_FIELDS = ("input_ids", "position_ids", "attention_mask", "rows", "columns", "targets", "sequence")


def pack_groups(groups: list[tuple[list[int], list[list[int]]]], pad_id: int) -> PackedRows:
    """Pack each (prompt ids, [response ids, ...]) group into one row.

    Every prompt needs at least one token: the prompt's last token predicts each response's
    first token.
    """
    if not groups:
        raise ValueError("pack_groups needs at least one group")
    width = max(len(prompt) + sum(len(r) for r in responses) for prompt, responses in groups)
    input_ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    segments = torch.full((len(groups), width), PAD_SEGMENT, dtype=torch.long)
    rows, columns, targets, sequence, lengths = [], [], [], [], []
    for row, (prompt, responses) in enumerate(groups):
        if not prompt:
            raise ValueError(f"group {row} has an empty prompt; the prompt needs at least one token")
        start = len(prompt)
        input_ids[row, :start] = torch.tensor(prompt)
        positions[row, :start] = torch.arange(start)
        segments[row, :start] = 0
        for number, response in enumerate(responses):
            count = len(response)
            stop = start + count
            if count:
                input_ids[row, start:stop] = torch.tensor(response)
                positions[row, start:stop] = torch.arange(len(prompt), len(prompt) + count)
                segments[row, start:stop] = number + 1
                # Column j predicts the token after it: the prompt's last token predicts the first
                # response token, the response's own tokens predict the rest.
                columns.append(torch.cat([torch.tensor([len(prompt) - 1]), torch.arange(start, stop - 1)]))
                rows.append(torch.full((count,), row))
                targets.append(torch.tensor(response))
                sequence.append(torch.full((count,), len(lengths)))
            lengths.append(count)
            start = stop
    mask = None
    if any(len(responses) > 1 for _, responses in groups):
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        keys, queries = segments[:, None, :], segments[:, :, None]
        # A query attends to a key that is not after it and belongs to the prompt or to the query's
        # own segment. Padding is its own segment after every real token, so no real token attends
        # to it. Each padding query attends at least to itself, which keeps softmax finite.
        mask = (causal & ((keys == 0) | (keys == queries)))[:, None]
    empty = torch.zeros(0, dtype=torch.long)
    return PackedRows(
        input_ids=input_ids,
        position_ids=positions,
        attention_mask=mask,
        rows=torch.cat(rows) if rows else empty,
        columns=torch.cat(columns) if columns else empty,
        targets=torch.cat(targets) if targets else empty,
        sequence=torch.cat(sequence) if sequence else empty,
        lengths=lengths,
        tokens=sum(len(prompt) + sum(len(r) for r in responses) for prompt, responses in groups),
    )


def mask_for(model: torch.nn.Module | None, mask: torch.Tensor) -> torch.Tensor:
    """Convert a boolean 4D mask to the form the model's attention implementation reads."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    if implementation == "sdpa":
        return mask
    if implementation == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            ~mask, torch.finfo(dtype).min
        )
    raise ValueError(
        f"packed prompt and responses need 'sdpa' or 'eager' attention, but the model uses "
        f"{implementation!r}; load it with attn_implementation='sdpa'"
    )
