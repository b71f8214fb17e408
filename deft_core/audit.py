"""The report of one dataset load: what was read, what was skipped or flagged, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Problems that make a row unusable: the row is skipped (or the load fails on request).
ROW_ERRORS: dict[str, str] = {
    "unparseable": "line is not valid JSON or the row cannot be decoded",
    "missing_field": "a required field is missing",
    "invalid_field": "a field has the wrong type or an unknown value",
    "prompt_mismatch": "chosen and rejected have different prompts",
    "empty_response": "the chosen or rejected response is empty",
}

# Problems that leave a usable pair: the pair is kept and carries the flag.
PAIR_WARNINGS: dict[str, str] = {
    "identical_responses": "chosen and rejected responses are identical",
    "duplicate": "the same prompt, chosen and rejected appear earlier in the file",
    "truncated": "the length limit cuts the prompt or a response",
}

MAX_EXAMPLES = 5


@dataclass
class AuditExample:
    """One occurrence of a problem, located in the input."""

    line: int
    message: str
    field: str = ""
    snippet: str = ""


@dataclass
class LoadAudit:
    """Counts and examples of every problem met while reading one dataset."""

    source: str
    format: str = "unknown"
    location_unit: str = "line"  # "line" for JSON Lines and CSV, "record" otherwise
    rows_read: int = 0
    pairs_loaded: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[AuditExample]] = field(default_factory=dict)

    def add(self, kind: str, line: int, message: str, field: str = "", snippet: str = "") -> None:
        if kind not in ROW_ERRORS and kind not in PAIR_WARNINGS:
            raise ValueError(f"unknown audit kind {kind!r}")
        self.counts[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(AuditExample(line, message, field, snippet[:200]))

    @property
    def rows_skipped(self) -> int:
        return sum(self.counts[kind] for kind in ROW_ERRORS)

    def where(self, line: int) -> str:
        """Format a location in the input, such as "data.jsonl:12" or "data.json record 12"."""
        if self.location_unit == "line":
            return f"{self.source}:{line}"
        return f"{self.source} record {line}"

    def summary_lines(self) -> list[str]:
        """Describe the load in a few lines of text for the CLI and logs."""
        lines = [
            f"source: {self.source}",
            f"format: {self.format}",
            f"rows read: {self.rows_read}",
            f"pairs loaded: {self.pairs_loaded}",
            f"rows skipped: {self.rows_skipped}",
        ]
        for kind, description in {**ROW_ERRORS, **PAIR_WARNINGS}.items():
            count = self.counts.get(kind, 0)
            if not count:
                continue
            action = "skipped" if kind in ROW_ERRORS else "kept, flagged"
            lines.append(f"  {kind}: {count} ({description}; {action})")
            for example in self.examples.get(kind, []):
                lines.append(f"    {self.where(example.line)}: {example.message}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "location_unit": self.location_unit,
            "rows_read": self.rows_read,
            "pairs_loaded": self.pairs_loaded,
            "rows_skipped": self.rows_skipped,
            "counts": dict(self.counts),
            "examples": {
                kind: [vars(example) for example in examples] for kind, examples in self.examples.items()
            },
        }
