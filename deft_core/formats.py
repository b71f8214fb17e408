"""Convert one input record, in any supported layout, into the prompt and two responses of a pair.

Supported layouts, detected per record from the value types:

- ``hh``: HH-RLHF raw. ``chosen`` and ``rejected`` are whole dialogues marked with
  "\\n\\nHuman:" and "\\n\\nAssistant:"; the prompt is everything up to the last
  "\\n\\nAssistant:" marker, which both must share.
- ``explicit``: ``prompt``, ``chosen`` and ``rejected`` are plain strings.
- ``chat``: chat message lists, ``{"role", "content"}`` or ``{"from", "value"}``. Either the
  prompt is explicit (``prompt``, ``conversations`` or ``messages`` column, as in LLaMA-Factory's
  sharegpt layout) and the responses are messages or strings, or the prompt is implicit: chosen and
  rejected are whole conversations that share every message but the last.

Other column names reach these layouts through a column mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deft_core.pairs import Message

HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_ASSISTANT = "\n\nAssistant:"
PROMPT_COLUMNS = ("prompt", "conversations", "messages")
ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


class RecordError(Exception):
    """A record that cannot become a pair; `kind` is one of the audit's row errors."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


def apply_column_mapping(record: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Rename the record's columns to deft's names; `columns` maps deft name to input column."""
    renamed = dict(record)
    for target, source in columns.items():
        if source not in record:
            raise RecordError("missing_field", source, f"column {source!r} (mapped to {target}) is missing")
        renamed[target] = record[source]
    return renamed


def parse_record(record: Mapping[str, Any]) -> tuple[str, list[Message], str, str]:
    """Return (layout, prompt messages, chosen text, rejected text) for one record."""
    for name in ("chosen", "rejected"):
        if name not in record or record[name] is None:
            raise RecordError("missing_field", name, f"field {name!r} is missing")
    prompt_column = next((c for c in PROMPT_COLUMNS if record.get(c) is not None), None)
    chosen, rejected = record["chosen"], record["rejected"]

    if prompt_column is not None:
        prompt = parse_prompt(record[prompt_column], prompt_column)
        layout = (
            "explicit"
            if all(isinstance(v, str) for v in (record[prompt_column], chosen, rejected))
            else "chat"
        )
        return layout, prompt, response_text(chosen, "chosen"), response_text(rejected, "rejected")
    if isinstance(chosen, str) and isinstance(rejected, str):
        return ("hh", *parse_hh_pair(chosen, rejected))
    if isinstance(chosen, list) and isinstance(rejected, list):
        return ("chat", *parse_implicit_chat(chosen, rejected))
    raise RecordError(
        "missing_field",
        "prompt",
        "no prompt column (prompt, conversations or messages) and chosen/rejected are not "
        "HH-RLHF dialogues or message lists; map the columns with --columns",
    )


def parse_hh_pair(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """Split two HH-RLHF dialogues into their shared prompt and final responses."""
    prompts = []
    responses = []
    for name, dialogue in (("chosen", chosen), ("rejected", rejected)):
        cut = dialogue.rfind(HH_ASSISTANT)
        if cut < 0:
            raise RecordError("invalid_field", name, f"{name} has no '\\n\\nAssistant:' turn")
        prompts.append(dialogue[: cut + len(HH_ASSISTANT)])
        responses.append(dialogue[cut + len(HH_ASSISTANT) :].strip())
    if prompts[0] != prompts[1]:
        raise RecordError(
            "prompt_mismatch",
            "chosen/rejected",
            "chosen and rejected differ before the last '\\n\\nAssistant:' marker: "
            f"...{prompts[0][-60:]!r} vs ...{prompts[1][-60:]!r}",
        )
    return parse_hh_dialogue(prompts[0]), responses[0], responses[1]


def parse_hh_dialogue(text: str) -> list[Message]:
    """Turn an HH-RLHF prompt ("\\n\\nHuman: ...\\n\\nAssistant:") into chat messages.

    The trailing empty assistant marker is dropped; text before the first marker, if any,
    becomes part of the first user message.
    """
    parts = HH_TURN.split(text)
    messages: list[Message] = []
    leading = parts[0].strip()
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    if leading:
        if messages and messages[0]["role"] == "user":
            messages[0]["content"] = f"{leading}\n\n{messages[0]['content']}"
        else:
            messages.insert(0, {"role": "user", "content": leading})
    return messages


def parse_message(value: Any, field: str) -> Message:
    """Normalise one chat message with role/content or from/value keys."""
    if not isinstance(value, Mapping):
        raise RecordError(
            "invalid_field", field, f"{field} must be a message object, got {type(value).__name__}"
        )
    role = value.get("role", value.get("from"))
    content = value.get("content", value.get("value"))
    if role is None or content is None:
        raise RecordError("missing_field", field, f"{field} needs role/content or from/value keys")
    if not isinstance(content, str):
        raise RecordError(
            "invalid_field", field, f"{field} content must be text, got {type(content).__name__}"
        )
    normalised = ROLE_NAMES.get(str(role).lower())
    if normalised is None:
        allowed = ", ".join(sorted(ROLE_NAMES))
        raise RecordError("invalid_field", field, f"{field} has unknown role {role!r}; allowed: {allowed}")
    return {"role": normalised, "content": content}


def parse_messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise RecordError(
            "invalid_field", field, f"{field} must be a list of messages, got {type(value).__name__}"
        )
    return [parse_message(item, f"{field}[{i}]") for i, item in enumerate(value)]


def parse_prompt(value: Any, field: str) -> list[Message]:
    """Read an explicit prompt: plain text (HH-marked or not) or a message list."""
    if isinstance(value, str):
        if HH_TURN.search(value):
            return parse_hh_dialogue(value)
        return [{"role": "user", "content": value}]
    messages = parse_messages(value, field)
    if not messages:
        raise RecordError("invalid_field", field, f"{field} is an empty message list")
    return messages


def response_text(value: Any, field: str) -> str:
    """Read a response given as text, as one message, or as a list ending in an assistant message."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        messages = parse_messages(value, field)
        if not messages or messages[-1]["role"] != "assistant":
            raise RecordError("invalid_field", field, f"{field} must end with an assistant message")
        return messages[-1]["content"].strip()
    message = parse_message(value, field)
    if message["role"] != "assistant":
        raise RecordError(
            "invalid_field", field, f"{field} must be an assistant message, got role {message['role']!r}"
        )
    return message["content"].strip()


def parse_implicit_chat(chosen: list, rejected: list) -> tuple[list[Message], str, str]:
    """Split two whole conversations into their shared prompt messages and final responses."""
    chosen_messages = parse_messages(chosen, "chosen")
    rejected_messages = parse_messages(rejected, "rejected")
    for name, messages in (("chosen", chosen_messages), ("rejected", rejected_messages)):
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise RecordError(
                "invalid_field", name, f"{name} must hold a prompt and end with an assistant message"
            )
    if chosen_messages[:-1] != rejected_messages[:-1]:
        raise RecordError(
            "prompt_mismatch", "chosen/rejected", "chosen and rejected differ before their last message"
        )
    return (
        chosen_messages[:-1],
        chosen_messages[-1]["content"].strip(),
        rejected_messages[-1]["content"].strip(),
    )
