"""Plotly figures of the dashboard, built from plain tables so that they can be tested without Streamlit."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

CHOSEN_COLOR = "#1f77b4"
REJECTED_COLOR = "#ff7f0e"
KEPT_COLOR = "#2ca02c"
DROPPED_COLOR = "#9e9e9e"
BINS = 40


def fit_axes(figure: go.Figure) -> go.Figure:
    """Let every axis grow the margins to fit its tick labels and title, and write small ticks as 2e-5.

    Fixed margins cut off long category names and axis titles. Plotly's default exponent format
    ("B", SI prefixes) writes 0.00002 as "20μ", which reads as a unit. The "e" format writes 2e-5.
    """
    figure.update_xaxes(automargin=True, exponentformat="e")
    figure.update_yaxes(automargin=True, exponentformat="e")
    return figure


def legend_below(figure: go.Figure) -> go.Figure:
    """Anchor a horizontal legend to the bottom of the whole figure, below the x tick labels.

    A legend placed at a fixed fraction below the plot area covers long rotated tick labels.
    """
    figure.update_layout(legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"})
    return figure


def pop_title(figure: go.Figure) -> tuple[str, go.Figure]:
    """Remove the figure's title and return it, for the page to show as text that wraps.

    Plotly never wraps a title, so a title longer than a narrow column is cut off.
    """
    title = figure.layout.title.text or ""
    figure.update_layout(title=None, margin={"t": 10})
    return title, figure


def layout(figure: go.Figure, title: str, x: str, y: str) -> go.Figure:
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        height=320,
        legend={"orientation": "h", "y": -0.25},
    )
    return fit_axes(figure)


def overlaid_histogram(series: dict[str, np.ndarray], colors: list[str], title: str, x: str) -> go.Figure:
    figure = go.Figure()
    for (name, values), color in zip(series.items(), colors, strict=True):
        values = np.asarray(values, dtype=float)
        figure.add_trace(
            go.Histogram(
                x=values[np.isfinite(values)], name=name, opacity=0.6, marker_color=color, nbinsx=BINS
            )
        )
    figure.update_layout(barmode="overlay")
    return layout(figure, title, x, "pairs")


def length_histogram(lengths: pd.DataFrame) -> go.Figure:
    return overlaid_histogram(
        {
            "prompt": lengths["prompt_tokens"],
            "chosen": lengths["chosen_tokens"],
            "rejected": lengths["rejected_tokens"],
        },
        ["#7f7f7f", CHOSEN_COLOR, REJECTED_COLOR],
        "Lengths in tokens",
        "tokens",
    )


def token_bars(rows: list[dict], title: str, color: str, value_label: str) -> go.Figure:
    """Horizontal bars of top tokens, the largest on top; `rows` come from TokenDistributions.top_tokens."""
    rows = list(reversed(rows))
    figure = go.Figure(
        go.Bar(
            x=[r["value"] for r in rows],
            # Ids keep equal-looking tokens apart; Plotly would merge equal category labels.
            # Plotly reads tags such as <b> in labels, so token text is escaped.
            y=[f"{html.escape(r['token'])}  ({r['id']})" for r in rows],
            orientation="h",
            marker_color=color,
            customdata=[[r["chosen_count"], r["rejected_count"]] for r in rows],
            hovertemplate="%{y}<br>" + value_label + " %{x:.3g}<br>c+ %{customdata[0]}, c- %{customdata[1]}"
            "<extra></extra>",
        )
    )
    figure = layout(figure, title, value_label, "")
    figure.update_layout(height=max(320, 22 * len(rows) + 80))
    return figure


def reward_histogram(table: pd.DataFrame) -> go.Figure:
    return overlaid_histogram(
        {"reward of chosen": table["reward_chosen"], "reward of rejected": table["reward_rejected"]},
        [CHOSEN_COLOR, REJECTED_COLOR],
        "Distribution reward r of each response",
        "r",
    )


def score_histogram(table: pd.DataFrame, keep: np.ndarray, threshold: float | None) -> go.Figure:
    """Histogram of pair scores split into kept and dropped, with the cut drawn as a line."""
    scores = table["score"].to_numpy(dtype=float)
    keep = np.asarray(keep, dtype=bool)
    edges = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=BINS)
    figure = go.Figure()
    for name, mask, color in (("kept", keep, KEPT_COLOR), ("dropped", ~keep, DROPPED_COLOR)):
        values = scores[mask & np.isfinite(scores)]
        figure.add_trace(
            go.Histogram(
                x=values,
                name=f"{name} ({len(values)})",
                marker_color=color,
                xbins={"start": float(edges[0]), "end": float(edges[-1]), "size": float(edges[1] - edges[0])}
                if len(edges) > 1 and edges[-1] > edges[0]
                else None,
            )
        )
    figure.update_layout(barmode="stack")
    if threshold is not None and np.isfinite(threshold):
        figure.add_vline(
            x=threshold, line_dash="dash", line_color="black", annotation_text=f"{threshold:.4g}"
        )
    return layout(figure, "Pair score s", "s", "pairs")


def score_length_scatter(table: pd.DataFrame, keep: np.ndarray, lengths: np.ndarray) -> go.Figure:
    keep = np.asarray(keep, dtype=bool)
    figure = go.Figure()
    for name, mask, color in (("dropped", ~keep, DROPPED_COLOR), ("kept", keep, KEPT_COLOR)):
        figure.add_trace(
            go.Scattergl(
                x=np.asarray(lengths)[mask],
                y=table["score"].to_numpy()[mask],
                mode="markers",
                name=name,
                marker={"color": color, "size": 5, "opacity": 0.7},
                text=table["pair_id"].to_numpy()[mask],
                hovertemplate="%{text}<br>length %{x:.0f}<br>score %{y:.4g}<extra></extra>",
            )
        )
    return layout(figure, "Pair score against response length", "mean response length (tokens)", "s")
