"""Helpers for the wording of user-facing messages."""

from __future__ import annotations


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """Format a count with its noun in the matching number: "1 pair", "0 pairs", "3 pairs".

    `plural` defaults to `singular` + "s".
    """
    noun = singular if count == 1 else (plural or f"{singular}s")
    return f"{count} {noun}"
