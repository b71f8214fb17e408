"""Prompt rendering and response tokens with the bundled model's real tokenizer."""

from __future__ import annotations

import itertools

import pytest

from deft_core.encoding import PairEncoder, render_prompt, resolve_template
from deft_core.errors import DeftError
from deft_core.models import load_tokenizer
from deft_core.pairs import PreferencePair


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("bundled")


PAIR = PreferencePair(
    id="p",
    prompt=[
        {"role": "user", "content": "Hello?"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Name a fruit."},
    ],
    chosen="An apple.",
    rejected="No.",
)


def test_chat_template_is_default(tokenizer):
    assert resolve_template(tokenizer, "auto") == "chat"


def test_chat_response_ends_with_turn_end(tokenizer):
    encoder = PairEncoder(tokenizer, "chat")
    encoded = encoder.encode(PAIR)
    assert encoder.end_ids == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert encoded.chosen_ids[-1] == encoder.end_ids[0]
    assert tokenizer.decode(encoded.chosen_ids[:-1]) == "An apple."
    prompt_text = tokenizer.decode(encoded.prompt_ids)
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert "Name a fruit." in prompt_text


def test_chat_sequence_equals_template_rendering(tokenizer):
    """Prompt + response tokens reproduce the template's own rendering of the whole dialogue."""
    encoded = PairEncoder(tokenizer, "chat").encode(PAIR)
    whole = tokenizer.apply_chat_template(
        [*PAIR.prompt, {"role": "assistant", "content": PAIR.chosen}], tokenize=False
    )
    assert tokenizer.decode(encoded.prompt_ids + encoded.chosen_ids) == whole.rstrip("\n")


def test_raw_template_uses_hh_markers(tokenizer):
    encoder = PairEncoder(tokenizer, "raw")
    encoded = encoder.encode(PAIR)
    assert (
        render_prompt(tokenizer, PAIR.prompt, "raw")
        == "\n\nHuman: Hello?\n\nAssistant: Hi.\n\nHuman: Name a fruit.\n\nAssistant:"
    )
    assert tokenizer.decode(encoded.rejected_ids) == " No." + tokenizer.eos_token


def test_no_doubled_special_tokens(tokenizer):
    encoded = PairEncoder(tokenizer, "chat").encode(PAIR)
    special = set(tokenizer.all_special_ids)
    sequence = encoded.prompt_ids + encoded.chosen_ids
    doubled = [a for a, b in itertools.pairwise(sequence) if a == b and a in special]
    assert doubled == []


def test_long_prompt_is_cut_from_the_start(tokenizer):
    long_pair = PreferencePair("p", [{"role": "user", "content": "word " * 300}], "Short answer.", "No.")
    encoded = PairEncoder(tokenizer, "chat", max_length=64).encode(long_pair)
    assert encoded.prompt_cut > 0
    assert encoded.response_cut == 0
    assert len(encoded.prompt_ids) + len(encoded.chosen_ids) <= 64
    assert tokenizer.decode(encoded.prompt_ids).endswith("assistant\n")


def test_long_response_is_cut_at_the_end(tokenizer):
    long_pair = PreferencePair("p", [{"role": "user", "content": "Hi"}], "very " * 200, "No.")
    encoded = PairEncoder(tokenizer, "chat", max_length=64).encode(long_pair)
    assert encoded.response_cut > 0
    assert len(encoded.prompt_ids) + len(encoded.chosen_ids) == 64
    assert encoded.truncated


def test_invalid_template_and_length(tokenizer):
    with pytest.raises(DeftError, match="invalid template"):
        PairEncoder(tokenizer, "html")
    with pytest.raises(DeftError, match="max_length"):
        PairEncoder(tokenizer, "chat", max_length=2)


def test_no_pairs_encode_to_an_empty_list(tokenizer):
    """A training run without held-out pairs encodes an empty split."""
    assert PairEncoder(tokenizer, "chat", 64).encode_many([]) == []
