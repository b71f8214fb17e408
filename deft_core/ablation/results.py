"""Result rows of an ablation, the table, the CSV file and the plotly charts.

One row per evaluated model: the base model first, then each variant. Columns:

- preference_accuracy, logprob_accuracy, reward_mean, bleu, perplexity, length_mean:
  deft_core.compare's evaluate_model on the first `eval_limit` held-out pairs. Its preference
  accuracy compares DPO implicit rewards for a run but mean token log-probs for the base model.
  Its logprob_accuracy compares mean token log-probs for every model.
- dpo_reward_accuracy: the run's final evaluation on every held-out pair, the share of pairs
  whose implicit reward beta * log(pi / pi_ref) is higher for the chosen response. The base
  model has none, because its implicit rewards are all 0.
  Runs compute the held-out log pi_ref themselves, in the batches evaluation uses, so every
  variant starts from implicit rewards of exactly 0.
- run_logprob_accuracy: the run's final evaluation on every held-out pair, by mean token
  log-prob. The base model's value is a run's step-0 evaluation, where the fresh adapter leaves
  the model unchanged.
- train_seconds: seconds in optimizer steps. run_seconds: the run's wall time, with model
  loading, reference log-probs and its two evaluations (of the last process, when resumed).
"""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from deft_core.ablation.config import Variant
from deft_core.charts import fit_axes
from deft_core.text import count_noun
from deft_core.training.runs import RunDir

# Columns of results.csv, in order. The "metric" names come from evaluate_model.
COLUMNS = (
    "variant",
    "selection",
    "guidance",
    "omega",
    "train_pairs",
    "pairs_seen",
    "preference_accuracy",
    "logprob_accuracy",
    "dpo_reward_accuracy",
    "run_logprob_accuracy",
    "reward_mean",
    "bleu",
    "perplexity",
    "length_mean",
    "train_seconds",
    "run_seconds",
    "eval_seconds",
    "run",
)
METRICS = ("preference_accuracy", "logprob_accuracy", "reward_mean", "bleu", "perplexity", "length_mean")
# The shorter table the CLI prints and the dashboard shows first.
SUMMARY_COLUMNS = (
    "variant",
    "train_pairs",
    "preference_accuracy",
    "logprob_accuracy",
    "dpo_reward_accuracy",
    "reward_mean",
    "bleu",
    "perplexity",
    "train_seconds",
)
GUIDANCE_COLORS = {"on": "#2ca02c", "off": "#1f77b4"}


def base_row(metrics: dict[str, float], eval_seconds: float) -> dict[str, Any]:
    """Return the row of the untrained base model; it has no run, so no DPO reward accuracy."""
    return {
        "variant": "base",
        "selection": "none",
        "guidance": "off",
        "omega": 0.0,
        "train_pairs": 0,
        "pairs_seen": 0,
        **{name: metrics.get(name) for name in METRICS},
        "dpo_reward_accuracy": None,
        "run_logprob_accuracy": None,
        "train_seconds": 0.0,
        "run_seconds": 0.0,
        "eval_seconds": round(eval_seconds, 1),
        "run": "",
    }


def training_seconds(run: RunDir) -> float:
    """Return the seconds spent in optimizer steps, summed over the run's logged steps.

    A step logged twice (by a process that stopped after logging it but before its checkpoint,
    then by the resumed process) counts once, with its last record.
    """
    per_step = {r["step"]: r["train/seconds"] for r in run.metrics() if "train/seconds" in r}
    return float(sum(per_step.values()))


def variant_row(
    variant: Variant, run: RunDir, metrics: dict[str, float], eval_seconds: float
) -> dict[str, Any]:
    """Return one variant's row from its run's summary and its evaluation metrics."""
    summary = run.summary() or {}
    config = run.config()
    final = summary.get("eval_last") or {}
    return {
        "variant": variant.name,
        "selection": variant.selection
        if variant.selection == "full"
        else f"{variant.selection} {config.selection_value:g}%",
        "guidance": "on" if variant.guided else "off",
        "omega": config.guidance_weight,
        "train_pairs": summary.get("data", {}).get("train_pairs"),
        "pairs_seen": summary.get("step", 0) * config.batch_size * config.grad_accum,
        **{name: metrics.get(name) for name in METRICS},
        "dpo_reward_accuracy": final.get("eval/rewards/accuracies"),
        "run_logprob_accuracy": final.get("eval/preference_accuracy"),
        "train_seconds": round(training_seconds(run), 1),
        "run_seconds": summary.get("wall_seconds"),
        "eval_seconds": round(eval_seconds, 1),
        "run": run.run_id,
    }


def fill_base_logprob_accuracy(rows: list[dict[str, Any]], run: RunDir) -> None:
    """Set the base row's run_logprob_accuracy from the run's step-0 evaluation, once."""
    first = (run.summary() or {}).get("eval_first") or {}
    for row in rows:
        if row["variant"] == "base" and row.get("run_logprob_accuracy") is None and first.get("step") == 0:
            row["run_logprob_accuracy"] = first.get("eval/preference_accuracy")


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the rows as a table with the COLUMNS in order (missing values are empty)."""
    return pd.DataFrame(rows, columns=list(COLUMNS))


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    results_frame(rows).to_csv(buffer, index=False)
    return buffer.getvalue()


def table_text(rows: list[dict[str, Any]]) -> str:
    """Return the summary table as aligned plain text, for the terminal."""
    frame = results_frame(rows)[list(SUMMARY_COLUMNS)]
    return frame.to_string(index=False, float_format=lambda value: f"{value:.4f}", na_rep="-")


def standard_error(fraction: float | None, count: int) -> float | None:
    """Return the binomial standard error sqrt(p (1 - p) / n) of an accuracy over n pairs."""
    if fraction is None or count < 1 or not math.isfinite(fraction):
        return None
    return math.sqrt(fraction * (1 - fraction) / count)


def figures(rows: list[dict[str, Any]], held_out_pairs: int, evaluated_pairs: int) -> dict[str, go.Figure]:
    """Return bar charts of accuracy, reward of generations, BLEU and training time per variant.

    Accuracy bars carry the binomial standard error over the pairs each accuracy counts
    (`evaluated_pairs` for evaluate_model's, `held_out_pairs` for the runs' own), to show how far
    apart two bars must be before the difference means anything.
    """
    frame = results_frame(rows)
    colors = [GUIDANCE_COLORS.get(g, "#9e9e9e") for g in frame["guidance"]]
    charts = {}

    accuracy = go.Figure()
    for column, name, pattern, count in (
        (
            "preference_accuracy",
            f"preference accuracy ({count_noun(evaluated_pairs, 'pair')})",
            "",
            evaluated_pairs,
        ),
        (
            "dpo_reward_accuracy",
            f"DPO reward accuracy ({count_noun(held_out_pairs, 'pair')})",
            "/",
            held_out_pairs,
        ),
        (
            "run_logprob_accuracy",
            f"log-prob accuracy ({count_noun(held_out_pairs, 'pair')})",
            ".",
            held_out_pairs,
        ),
    ):
        errors = [standard_error(value, count) for value in frame[column]]
        accuracy.add_trace(
            go.Bar(
                x=frame["variant"],
                y=frame[column],
                name=name,
                marker={"color": colors, "pattern": {"shape": pattern}},
                error_y={"type": "data", "array": errors, "visible": True},
            )
        )
    accuracy.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    accuracy.update_layout(barmode="group")
    charts["accuracy"] = style(accuracy, "Accuracy on held-out pairs (bars: 1 standard error)", "accuracy")

    for column, title, axis in (
        ("reward_mean", "Distribution reward of generations", "mean r(x, generation)"),
        ("bleu", "BLEU of generations against the chosen response", "BLEU"),
        ("train_seconds", "Training time (optimizer steps only)", "seconds"),
    ):
        bars = go.Bar(x=frame["variant"], y=frame[column], marker={"color": colors}, showlegend=False)
        figure = go.Figure(bars)
        charts[column] = style(figure, title, axis)
    return charts


def style(figure: go.Figure, title: str, axis: str) -> go.Figure:
    figure.update_layout(
        title=title,
        yaxis_title=axis,
        height=340,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.3},
    )
    return fit_axes(figure)


def plots_html(rows: list[dict[str, Any]], held_out_pairs: int, evaluated_pairs: int, title: str) -> str:
    """Return one self-contained HTML page with every chart; plotly.js is inlined, so it opens offline."""
    charts = list(figures(rows, held_out_pairs, evaluated_pairs).values())
    grid = make_subplots(rows=2, cols=2, subplot_titles=[c.layout.title.text for c in charts])
    for index, chart in enumerate(charts):
        for trace in chart.data:
            grid.add_trace(trace, row=index // 2 + 1, col=index % 2 + 1)
        grid.update_yaxes(title_text=chart.layout.yaxis.title.text, row=index // 2 + 1, col=index % 2 + 1)
    grid.add_hline(y=0.5, line_dash="dot", row=1, col=1)
    grid.update_layout(
        title=f"{title} (green: guidance on, blue: off)",
        height=800,
        barmode="group",
        legend={"orientation": "h", "y": -0.08},
    )
    return fit_axes(grid).to_html(include_plotlyjs=True, full_html=True)
