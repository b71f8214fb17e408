"""Comparison reports: the metrics table, plotly charts, word diffs, and Markdown or HTML files.

Every piece of dataset and model text is escaped before it goes into HTML (html.escape) or into
Markdown (table cells and code fences), because prompts and outputs may contain markup.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from deft_core.charts import fit_axes
from deft_core.compare.comparison import Comparison
from deft_core.compare.evaluate import METRICS
from deft_core.compare.metrics import word_diff
from deft_core.errors import DeftError
from deft_core.sources import atomic_path

METRIC_LABELS = {
    "preference_accuracy": "preference accuracy",
    "logprob_accuracy": "log-prob accuracy",
    "reward_mean": "distribution reward (mean)",
    "bleu": "BLEU vs chosen",
    "perplexity": "perplexity of chosen",
    "length_mean": "length (tokens, mean)",
    "words_mean": "length (words, mean)",
    "finished_share": "finished within max tokens",
    "reward_model_mean": "reward model score (mean)",
}
MODEL_COLORS = plotly.colors.qualitative.Plotly
OUTPUT_COLUMNS = ("reward", "length", "words", "bleu", "reward_model", "finished")
REPORT_SUFFIXES = (".md", ".markdown", ".html", ".htm")


def metrics_table(comparison: Comparison) -> pd.DataFrame:
    """Return one row per model and one column per metric present, in METRICS order."""
    present = [m for m in METRICS if any(m in e.metrics for e in comparison.evaluations)]
    rows = [
        {"model": e.label, **{m: e.metrics.get(m, math.nan) for m in present}} for e in comparison.evaluations
    ]
    return pd.DataFrame(rows, columns=["model", *present])


def outputs_table(comparison: Comparison) -> pd.DataFrame:
    """Return every output of every model: one row per (model, prompt)."""
    rows = []
    for evaluation in comparison.evaluations:
        for row in evaluation.outputs:
            rows.append({"model": evaluation.label, **row})
    return pd.DataFrame(rows)


def format_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def join_words(words: tuple[str, ...] | list[str]) -> str:
    """Join diff words with spaces, but put no space next to a line break."""
    return re.sub(r" ?\n ?", "\n", " ".join(words))


def diff_html(before: str, after: str) -> str:
    """Render `after` as escaped HTML: words not in `before` as <ins>, words only in `before` as <del>."""
    parts = []
    for segment in word_diff(before, after):
        removed = html.escape(join_words(segment.before), quote=True)
        added = html.escape(join_words(segment.after), quote=True)
        if segment.op == "equal":
            parts.append(added)
            continue
        if removed:
            parts.append(f'<del style="background:#fdd;color:#900">{removed}</del>')
        if added:
            parts.append(f'<ins style="background:#dfd;color:#060;text-decoration:none">{added}</ins>')
    return '<div style="white-space:pre-wrap">' + join_words(parts) + "</div>"


def text_block_html(text: str) -> str:
    return '<div style="white-space:pre-wrap">' + html.escape(text, quote=True) + "</div>"


def metric_figure(comparison: Comparison) -> go.Figure:
    """Draw one bar chart per metric, one colour per model, named in a shared legend.

    Run ids are long, so the bars carry no axis labels and the legend names the models.
    """
    table = metrics_table(comparison)
    metrics = [m for m in table.columns if m != "model"]
    columns = min(4, max(1, len(metrics)))
    rows = math.ceil(len(metrics) / columns) or 1
    titles = [METRIC_LABELS.get(m, m) for m in metrics]
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles)
    for model_index, record in enumerate(table.to_dict("records")):
        label = html.escape(record["model"])
        color = MODEL_COLORS[model_index % len(MODEL_COLORS)]
        for index, metric in enumerate(metrics):
            figure.add_trace(
                go.Bar(
                    x=[label],
                    y=[record[metric]],
                    name=label,
                    legendgroup=label,
                    showlegend=index == 0,
                    marker_color=color,
                    hovertemplate=f"{label}<br>{metric} %{{y:.4g}}<extra></extra>",
                ),
                row=index // columns + 1,
                col=index % columns + 1,
            )
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(
        height=240 * rows + 80,
        margin={"l": 40, "r": 10, "t": 60, "b": 20},
        title="Metrics",
        legend={"orientation": "h", "y": -0.05},
    )
    return fit_axes(figure)


def distribution_figure(comparison: Comparison, column: str, title: str) -> go.Figure:
    """Draw a box plot of one per-output value (reward, length) for each model."""
    figure = go.Figure()
    for model_index, evaluation in enumerate(comparison.evaluations):
        values = [row.get(column) for row in evaluation.outputs]
        figure.add_trace(
            go.Box(
                y=[v for v in values if v is not None],
                name=html.escape(evaluation.label),
                boxpoints="all",
                marker_color=MODEL_COLORS[model_index % len(MODEL_COLORS)],
            )
        )
    figure.update_layout(
        title=title, height=340, margin={"l": 40, "r": 10, "t": 40, "b": 40}, showlegend=False
    )
    return fit_axes(figure)


def figures(comparison: Comparison) -> list[go.Figure]:
    return [
        metric_figure(comparison),
        distribution_figure(comparison, "reward", "Distribution reward of each output"),
        distribution_figure(comparison, "length", "Output length in tokens"),
    ]


def plain_cell(value: object) -> str:
    """Format a table value as one line of text: numbers to 4 significant digits."""
    text = value if isinstance(value, str) else format_number(value)  # type: ignore[arg-type]
    return " ".join(text.split())


def markdown_cell(value: object) -> str:
    """Escape a value for a Markdown table cell: markup, pipes and line breaks."""
    return html.escape(plain_cell(value), quote=False).replace("|", "\\|")


def fenced(text: str) -> str:
    """Wrap text in a code fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def header_lines(comparison: Comparison) -> list[str]:
    meta = comparison.meta
    request = meta["request"]
    settings = request["settings"]
    decoding = "sampled" if settings["do_sample"] else "greedy"
    if settings["do_sample"]:
        decoding += (
            f" (temperature {settings['temperature']}, top_p {settings['top_p']}, seed {settings['seed']})"
        )
    return [
        f"- created: {meta['created_at']}",
        f"- base model: {meta['base_model']}",
        f"- runs: {', '.join(meta['runs'])}",
        f"- prompts: {meta['prompt_source']}, {len(comparison.evaluations[0].outputs)} evaluated",
        f"- decoding: {decoding}, at most {settings['max_new_tokens']} new tokens",
        f"- reward model: {request['reward_model'] or 'none'}",
    ]


def markdown_report(comparison: Comparison) -> str:
    """Return the comparison as Markdown: settings, warnings, metrics table, then every output."""
    table = metrics_table(comparison)
    lines = ["# Model comparison", "", *header_lines(comparison), ""]
    for warning in comparison.warnings:
        lines.append(f"> Warning: {markdown_cell(warning)}")
    lines += ["", "## Metrics", ""]
    lines.append("| " + " | ".join(["model", *[METRIC_LABELS.get(c, c) for c in table.columns[1:]]]) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for record in table.to_dict("records"):
        lines.append("| " + " | ".join(markdown_cell(record[c]) for c in table.columns) + " |")
    lines += [
        "",
        "Definitions of every metric: docs/compare.md in the deft repository.",
        "",
        "## Outputs",
        "",
    ]

    first = comparison.evaluations[0]
    for index, row in enumerate(first.outputs):
        lines += [f"### Prompt {index + 1}", "", fenced(row["prompt"]), ""]
        if row.get("reference"):
            lines += ["Chosen response:", "", fenced(row["reference"]), ""]
        for evaluation in comparison.evaluations:
            output = evaluation.outputs[index]
            numbers = ", ".join(
                f"{name} {format_number(output[name])}" for name in OUTPUT_COLUMNS if name in output
            )
            lines += [f"**{markdown_cell(evaluation.label)}** ({numbers}):", "", fenced(output["output"]), ""]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(METRIC_LABELS.get(str(c), str(c)))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(plain_cell(record[c]))}</td>" for c in frame.columns) + "</tr>"
        for record in frame.to_dict("records")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_outputs(comparison: Comparison) -> str:
    """Render each prompt with every model's output side by side, diffed against the first model's."""
    first = comparison.evaluations[0]
    sections = []
    for index, row in enumerate(first.outputs):
        cells = []
        for evaluation in comparison.evaluations:
            output = evaluation.outputs[index]
            body = (
                text_block_html(output["output"])
                if evaluation is first
                else diff_html(first.outputs[index]["output"], output["output"])
            )
            numbers = ", ".join(
                f"{name} {format_number(output[name])}" for name in OUTPUT_COLUMNS if name in output
            )
            cells.append(
                f"<td><b>{html.escape(evaluation.label)}</b><br><small>{html.escape(numbers)}</small>{body}</td>"
            )
        reference = row.get("reference")
        sections.append(
            f"<h3>Prompt {index + 1}</h3>{text_block_html(row['prompt'])}"
            + (f"<p><b>Chosen response</b></p>{text_block_html(reference)}" if reference else "")
            + f'<table class="outputs"><tr>{"".join(cells)}</tr></table>'
        )
    return "".join(sections)


STYLE = (
    "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
    "table.outputs td{width:1%}.warning{background:#fff3cd;padding:6px}"
)


def html_report(comparison: Comparison) -> str:
    """Return a standalone HTML page: the charts carry plotly.js inline, so it opens offline."""
    charts = [
        figure.to_html(full_html=False, include_plotlyjs=(index == 0))
        for index, figure in enumerate(figures(comparison))
    ]
    header = "".join(f"<li>{html.escape(line[2:])}</li>" for line in header_lines(comparison))
    warnings = "".join(f'<p class="warning">Warning: {html.escape(w)}</p>' for w in comparison.warnings)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Model comparison</title>'
        f"<style>{STYLE}</style></head><body><h1>Model comparison</h1><ul>{header}</ul>{warnings}"
        f"<h2>Metrics</h2>{html_table(metrics_table(comparison))}"
        "<p>Definitions of every metric: docs/compare.md in the deft repository. In every column after "
        "the first, green words are missing from the first model's output and red struck words are "
        "in the first model's output only.</p>"
        f"{''.join(charts)}<h2>Outputs</h2>{html_outputs(comparison)}</body></html>"
    )


def check_report_path(path: str | Path) -> Path:
    """Raise DeftError unless `path` ends in .md or .html and its folder exists; return it as a Path."""
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise DeftError(f"report {path}: give a name ending in .md or .html")
    if not path.parent.is_dir():
        raise DeftError(f"report {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise DeftError(f"report {path} is a folder; give a file name ending in .md or .html")
    return path


def write_report(comparison: Comparison, path: str | Path) -> Path:
    """Write the Markdown or HTML report, chosen by the file suffix, atomically; return the path."""
    path = check_report_path(path)
    suffix = path.suffix.lower()
    text = html_report(comparison) if suffix in (".html", ".htm") else markdown_report(comparison)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
