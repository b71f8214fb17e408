"""The one preference-pair record used everywhere inside deft."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
Message = dict[str, str]  # {"role": Role, "content": str}


@dataclass
class PreferencePair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) final assistant response.

    `prompt` is the dialogue before the final assistant turn, as chat messages. `chosen` and
    `rejected` hold only that final turn's text. `source` and `line` locate the record in its
    input: the 1-based line for JSON Lines and CSV files, the 1-based record number for JSON
    arrays, Parquet files and Hub datasets. `raw` keeps the record as it was read, so that a
    filtered subset can be written back in the input's own format.
    """

    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str = ""
    line: int = 0
    flags: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def prompt_text(self) -> str:
        """Return the prompt as plain text, one "Role: content" paragraph per message."""
        return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in self.prompt)
