"""Pure helpers behind the dashboard: length tables, kept/dropped statistics, length correlation,
skew warnings, table search and the token-coloured HTML of a response.

Everything here works on plain data (pandas tables, numpy arrays, strings), so it is tested
without Streamlit. Every piece of dataset text that goes into HTML is passed through
html.escape first, because the data contains markup-like and hostile text.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deft_core.distributions import TokenDistributions, readable_token
from deft_core.encoding import EncodedPair
from deft_core.pairs import PreferencePair
from deft_core.text import count_noun

# A kept subset whose median response length differs from the whole set's by more than this
# factor (either way) gets a warning: the score may be selecting on length.
SKEW_RATIO = 1.5
# A kept subset whose share of flagged pairs is this many times the whole set's gets a warning.
FLAG_SKEW_RATIO = 2.0
PREVIEW_CHARS = 160


def pairs_frame(pairs: list[PreferencePair], chars: int = PREVIEW_CHARS) -> pd.DataFrame:
    """Return one row per pair with shortened texts, for preview and search tables."""
    return pd.DataFrame(
        {
            "pair_id": [p.id for p in pairs],
            "line": [p.line for p in pairs],
            "prompt": [shorten(p.prompt_text, chars) for p in pairs],
            "chosen": [shorten(p.chosen, chars) for p in pairs],
            "rejected": [shorten(p.rejected, chars) for p in pairs],
            "flags": [",".join(p.flags) for p in pairs],
        }
    )


def scored_pairs_frame(table: pd.DataFrame, pairs: list[PreferencePair]) -> pd.DataFrame:
    """Join the score table with the shortened texts of its pairs, on pair_id."""
    texts = pairs_frame(pairs).drop(columns=["line", "flags"])
    columns = [
        "pair_id",
        "line",
        "score",
        "reward_chosen",
        "reward_rejected",
        "chosen_tokens",
        "rejected_tokens",
        "flags",
    ]
    return table[columns].merge(texts, on="pair_id", how="left")


def shorten(text: str, chars: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def length_frame(pairs: list[PreferencePair], encoded: list[EncodedPair]) -> pd.DataFrame:
    """Return prompt and response lengths in tokens (after the length limit) and characters."""
    return pd.DataFrame(
        {
            "pair_id": [p.id for p in pairs],
            "prompt_tokens": [len(e.prompt_ids) for e in encoded],
            "chosen_tokens": [len(e.chosen_ids) for e in encoded],
            "rejected_tokens": [len(e.rejected_ids) for e in encoded],
            "prompt_chars": [len(p.prompt_text) for p in pairs],
            "chosen_chars": [len(p.chosen) for p in pairs],
            "rejected_chars": [len(p.rejected) for p in pairs],
        }
    )


def response_length(table: pd.DataFrame) -> pd.Series:
    """Return the mean of the chosen and rejected token counts per pair."""
    return (table["chosen_tokens"] + table["rejected_tokens"]) / 2


@dataclass(frozen=True)
class KeepSummary:
    """Counts and medians of the kept pairs against the whole scored set."""

    total: int
    kept: int
    dropped: int
    unscored: int  # pairs without a finite score, which no selection keeps
    median_score_kept: float
    median_length_all: float
    median_length_kept: float

    @property
    def kept_percent(self) -> float:
        return 100.0 * self.kept / self.total if self.total else 0.0


def keep_summary(table: pd.DataFrame, keep: np.ndarray) -> KeepSummary:
    keep = np.asarray(keep, dtype=bool)
    lengths = response_length(table).to_numpy(dtype=float)
    scores = table["score"].to_numpy(dtype=float)
    return KeepSummary(
        total=len(table),
        kept=int(keep.sum()),
        dropped=int((~keep).sum()),
        unscored=int((~np.isfinite(scores)).sum()),
        median_score_kept=float(np.median(scores[keep])) if keep.any() else math.nan,
        median_length_all=float(np.median(lengths)) if len(lengths) else math.nan,
        median_length_kept=float(np.median(lengths[keep])) if keep.any() else math.nan,
    )


def correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (Pearson r, Spearman rho) over the finite pairs; NaN when undefined."""
    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    frame = frame[np.isfinite(frame["x"]) & np.isfinite(frame["y"])]
    if len(frame) < 3 or frame["x"].nunique() < 2 or frame["y"].nunique() < 2:
        return math.nan, math.nan
    pearson = float(np.corrcoef(frame["x"], frame["y"])[0, 1])
    spearman = float(np.corrcoef(frame["x"].rank(), frame["y"].rank())[0, 1])
    return pearson, spearman


def skew_warnings(table: pd.DataFrame, keep: np.ndarray) -> list[str]:
    """Describe ways in which the kept pairs differ sharply from the whole set."""
    keep = np.asarray(keep, dtype=bool)
    if not keep.any() or keep.all():
        return []
    warnings = []
    summary = keep_summary(table, keep)
    ratio = summary.median_length_kept / summary.median_length_all if summary.median_length_all else math.nan
    if math.isfinite(ratio) and (ratio >= SKEW_RATIO or ratio <= 1 / SKEW_RATIO):
        direction = "longer" if ratio > 1 else "shorter"
        warnings.append(
            f"Kept pairs have much {direction} responses: median {summary.median_length_kept:.0f} tokens "
            f"against {summary.median_length_all:.0f} for all pairs ({ratio:.2f}×). "
            "The selection may be choosing by length rather than content."
        )
    flagged = table["flags"].fillna("").astype(str).str.len().to_numpy() > 0
    share_all = flagged.mean()
    share_kept = flagged[keep].mean()
    if share_kept > 0 and share_kept >= FLAG_SKEW_RATIO * share_all and share_kept - share_all >= 0.05:
        warnings.append(
            f"{share_kept:.0%} of kept pairs carry a load flag (duplicate, identical responses or "
            f"truncated) against {share_all:.0%} of all pairs."
        )
    if summary.kept < 10:
        verb = "is" if summary.kept == 1 else "are"
        warnings.append(
            f"Only {count_noun(summary.kept, 'pair')} {verb} kept: "
            "statistics of the kept subset are unreliable."
        )
    return warnings


def search_frame(frame: pd.DataFrame, query: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Return the rows whose text columns contain `query`, ignoring case; all rows for an empty query."""
    query = query.strip()
    if not query:
        return frame
    columns = columns or [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    hit = np.zeros(len(frame), dtype=bool)
    for column in columns:
        hit |= frame[column].astype(str).str.contains(query, case=False, regex=False).to_numpy()
    return frame[hit]


def search_tokens(
    distributions: TokenDistributions, tokenizer: Any, query: str, limit: int = 200
) -> pd.DataFrame:
    """Return the tokens seen in the data whose decoded text contains `query` (ignoring case).

    Rows are sorted by |Q_diff|, largest first. Whitespace in the query may be typed as a
    space or as the visible marks of readable_token.
    """
    seen = np.flatnonzero(distributions.chosen_counts + distributions.rejected_counts)
    texts = tokenizer.batch_decode([[int(i)] for i in seen])
    needle = query.replace("·", " ").replace("↵", "\n").lower()
    hits = [int(i) for i, text in zip(seen, texts, strict=True) if needle in text.lower()]
    q_plus, q_minus = distributions.q_plus, distributions.q_minus
    frame = pd.DataFrame(
        {
            "id": hits,
            "token": [readable_token(tokenizer, i) for i in hits],
            "chosen_count": distributions.chosen_counts[hits],
            "rejected_count": distributions.rejected_counts[hits],
            "Q+": q_plus[hits],
            "Q-": q_minus[hits],
            "Q_diff": q_plus[hits] - q_minus[hits],
        }
    )
    order = frame["Q_diff"].abs().sort_values(ascending=False).index
    return frame.loc[order].head(limit).reset_index(drop=True)


def contribution_color(value: float, scale: float) -> str:
    """Map a contribution to a background colour: blue above zero, orange below, white at zero.

    Blue and orange stay distinguishable under the common colour-vision deficiencies.
    """
    if not math.isfinite(value) or scale <= 0:
        return "rgba(255,255,255,0)"
    strength = min(1.0, abs(value) / scale)
    alpha = round(0.85 * strength, 3)
    return f"rgba(31,119,180,{alpha})" if value > 0 else f"rgba(255,127,14,{alpha})"


def token_html(pieces: list[str], contributions: np.ndarray, scale: float) -> str:
    """Render response tokens as escaped spans coloured by their contribution to the reward.

    `pieces` are the decoded token texts in order, `contributions` the matching per-token
    contributions (token reward / T), and `scale` the absolute contribution of full colour.
    A newline inside a token becomes a line break after escaping, never before.
    """
    if len(pieces) != len(contributions):
        raise ValueError(f"{len(pieces)} token texts but {len(contributions)} contributions")
    spans = []
    for piece, value in zip(pieces, contributions, strict=True):
        text = html.escape(piece, quote=True).replace("\n", "↵<br>")
        if not text:
            text = "∅"  # a token that decodes to nothing (e.g. a part of a multi-byte character)
        spans.append(
            f'<span class="deft-token" style="background:{contribution_color(float(value), scale)}" '
            f'title="{float(value):+.3g}">{text}</span>'
        )
    return (
        '<div class="deft-tokens" style="white-space:pre-wrap;line-height:1.7">' + "".join(spans) + "</div>"
    )


def legend_html(scale: float) -> str:
    """Render the colour legend of token_html for a given full-colour scale."""
    stops = [-scale, -scale / 2, 0.0, scale / 2, scale]
    cells = "".join(
        f'<span style="background:{contribution_color(v, scale)};padding:0 0.6em;margin-right:2px">'
        f"{v:+.2g}</span>"
        for v in stops
    )
    return (
        '<div class="deft-legend">Contribution to the reward per token: '
        f"{cells} &nbsp;orange lowers the reward, blue raises it.</div>"
    )


def text_html(text: str) -> str:
    """Render plain dataset text as escaped HTML that keeps its line breaks."""
    return '<div style="white-space:pre-wrap">' + html.escape(text, quote=True) + "</div>"


def contribution_scale(*arrays: np.ndarray) -> float:
    """Return the 98th percentile of absolute contributions: a few outliers do not wash out the rest."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=float)) for a in arrays if len(a)] or [np.zeros(1)])
    values = values[np.isfinite(values)]
    if not len(values):
        return 1.0
    scale = float(np.percentile(values, 98))
    return scale if scale > 0 else float(values.max()) or 1.0
