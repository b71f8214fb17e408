"""Render prompts and tokenise responses: the one definition of "response tokens" in deft.

A sequence is `prompt_ids + response_ids`. The response tokens are the response text's tokens
followed by the token that ends the assistant turn (`<|im_end|>` for SmolLM2's chat template,
EOS for raw text). Rewards, token counts and training losses all use these ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from deft_core.errors import DeftError
from deft_core.pairs import Message, PreferencePair

Template = Literal["auto", "chat", "raw"]
TEMPLATES = ("auto", "chat", "raw")
RAW_SPEAKERS = {"user": "Human", "assistant": "Assistant", "system": "System"}
SENTINEL = "\x00deft-response\x00"


@dataclass
class EncodedPair:
    """Token ids of one pair, cut to the length limit."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_cut: int = 0  # tokens removed from the start of the prompt
    response_cut: int = 0  # tokens removed from the end of the longer response

    @property
    def truncated(self) -> bool:
        return self.prompt_cut > 0 or self.response_cut > 0


def resolve_template(tokenizer: Any, template: str) -> str:
    """Return "chat" or "raw": "auto" means the chat template where the tokenizer has one."""
    if template not in TEMPLATES:
        raise DeftError(f"invalid template {template!r}; allowed: {', '.join(TEMPLATES)}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "raw"
    if template == "chat" and not has_chat:
        raise DeftError("this model's tokenizer has no chat template; use --template raw")
    return template


def render_prompt(tokenizer: Any, messages: list[Message], template: str) -> str:
    """Return the prompt text that precedes the response, ending where the response starts."""
    if template == "chat":
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = "".join(f"\n\n{RAW_SPEAKERS[m['role']]}: {m['content']}" for m in messages)
    return f"{turns}\n\nAssistant:"


class PairEncoder:
    """Tokenise pairs for one tokenizer and template; see the module docstring for the layout."""

    def __init__(self, tokenizer: Any, template: str = "auto", max_length: int = 1024) -> None:
        if max_length < 8:
            raise DeftError(f"max_length must be at least 8 tokens, got {max_length}")
        self.tokenizer = tokenizer
        self.template = resolve_template(tokenizer, template)
        self.max_length = max_length
        self.end_ids = self.turn_end_ids()

    def turn_end_ids(self) -> list[int]:
        """Return the ids that close an assistant turn: the template's end token, or EOS for raw text."""
        tokenizer = self.tokenizer
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        if self.template == "raw":
            return eos
        messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": SENTINEL}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        suffix = text.split(SENTINEL, 1)[1] if SENTINEL in text else ""
        special = set(tokenizer.all_special_ids)
        suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        # Keep the suffix up to its first special token ("<|im_end|>"), not the newline after it.
        for index, token_id in enumerate(suffix_ids):
            if token_id in special:
                return suffix_ids[: index + 1]
        return eos

    def encode_prompt(self, messages: list[Message]) -> list[int]:
        text = render_prompt(self.tokenizer, messages, self.template)
        # A chat template writes its own BOS, so only raw text gets the tokenizer's special tokens.
        return self.tokenizer(text, add_special_tokens=self.template == "raw")["input_ids"]

    def encode(self, pair: PreferencePair) -> EncodedPair:
        return self.encode_many([pair])[0]

    def encode_many(self, pairs: list[PreferencePair]) -> list[EncodedPair]:
        """Tokenise many pairs with one batched tokenizer call per part."""
        if not pairs:
            return []  # fast tokenizers fail on an empty batch
        prompts = [render_prompt(self.tokenizer, p.prompt, self.template) for p in pairs]
        prompt_ids = self.tokenizer(prompts, add_special_tokens=self.template == "raw")["input_ids"]
        prefix = " " if self.template == "raw" else ""
        chosen = self.tokenizer([prefix + p.chosen for p in pairs], add_special_tokens=False)["input_ids"]
        rejected = self.tokenizer([prefix + p.rejected for p in pairs], add_special_tokens=False)["input_ids"]
        return [
            self.fit(p, c + self.end_ids, r + self.end_ids)
            for p, c, r in zip(prompt_ids, chosen, rejected, strict=True)
        ]

    def fit(self, prompt: list[int], chosen: list[int], rejected: list[int]) -> EncodedPair:
        """Cut a pair to max_length: first the prompt's start, then the responses' ends.

        The prompt keeps at least half of max_length when the responses are long.
        """
        longest = max(len(chosen), len(rejected))
        prompt_cut = response_cut = 0
        if len(prompt) + longest > self.max_length:
            keep = max(self.max_length - longest, min(len(prompt), self.max_length // 2))
            prompt_cut = len(prompt) - keep
            prompt = prompt[prompt_cut:]
            budget = self.max_length - len(prompt)
            response_cut = max(0, longest - budget)
            chosen, rejected = chosen[:budget], rejected[:budget]
        return EncodedPair(prompt, chosen, rejected, prompt_cut, response_cut)
