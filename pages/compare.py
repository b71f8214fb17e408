"""Compare: the base model and finished runs on the same prompts, side by side, with metrics and reports."""

from __future__ import annotations

import html
import json
from pathlib import Path

import streamlit as st

from deft_core.charts import fit_axes
from deft_core.compare.comparison import CompareRequest, Comparison, load_comparison, saved_comparisons
from deft_core.compare.evaluate import GenerationSettings
from deft_core.compare.jobs import cancel_compare, compare_status, start_compare
from deft_core.compare.report import (
    OUTPUT_COLUMNS,
    diff_html,
    distribution_figure,
    format_number,
    html_report,
    markdown_report,
    metric_figure,
    metrics_table,
    outputs_table,
    text_block_html,
    write_report,
)
from deft_core.dashboard_context import page_header
from deft_core.dashboard_state import show_error
from deft_core.errors import DeftError
from deft_core.text import count_noun
from deft_core.training.runs import RunDir, list_runs

VIEW_KEY = "compare.view"  # ("job", request key) or ("file", results.json path)
SOURCES = {"held_out": "Held-out pairs of the first run", "typed": "Prompts I type"}

page_header(
    "Compare",
    "Generate with the base model and with finished training runs on the same prompts, then compare "
    "them. The first run chosen supplies the held-out pairs (its seeded split, never trained on), "
    "Q_diff and the base model; the sidebar's model and dataset do not apply here. A run's preference "
    "accuracy uses the DPO implicit reward, the base model's the mean token log-probability. Every "
    "output's distribution reward is computed by the base model, so all outputs share one scale.",
    [
        r"\mathrm{acc} = \frac{1}{N}\sum_{i=1}^{N} \mathbf{1}\left[s(x_i, y_{w,i}) > s(x_i, y_{l,i})\right]",
        r"s(x, y) = \beta \log\frac{\pi_\theta(y|x)}{\pi_{\mathrm{ref}}(y|x)}\ \text{(run)}"
        r"\quad\text{or}\quad \frac{1}{T}\log\pi(y|x)\ \text{(base)}",
        r"\mathrm{PPL} = \exp\Big(-\frac{\sum_i \log \pi(y_{w,i} \mid x_i)}{\sum_i T_{w,i}}\Big)",
    ],
)


def finished_runs() -> list[RunDir]:
    return [
        run
        for run in list_runs()
        if run.status().get("state") == "completed" and (run.path / "adapter").is_dir()
    ]


def request_form(runs: list[RunDir]) -> CompareRequest | None:
    """Draw the comparison settings; return the request, or None after showing what is invalid."""
    ids = [run.run_id for run in runs]
    chosen = st.multiselect(
        "Finished runs",
        ids,
        default=ids[:1],
        key="compare.runs",
        help="The first run supplies the held-out pairs, Q_diff and the base model.",
    )
    left, right = st.columns(2)
    include_base = left.checkbox("Include the base model", value=True, key="compare.base")
    source = right.radio(
        "Prompts", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="compare.source"
    )
    typed = None
    if source == "typed":
        text = st.text_area("Prompts, one per line", key="compare.prompts", height=120)
        typed = text.splitlines()
    limit = st.number_input(
        "Prompts to evaluate (0 = all)", min_value=0, value=8, step=1, key="compare.limit"
    )

    columns = st.columns(5)
    decoding = columns[0].radio("Decoding", ("greedy", "sampled"), key="compare.decoding")
    sampled = decoding == "sampled"
    max_new = columns[1].number_input("Max new tokens", min_value=1, value=64, step=16, key="compare.max_new")
    seed = columns[2].number_input(
        "Seed", min_value=0, value=0, step=1, key="compare.seed", disabled=not sampled
    )
    temperature = columns[3].number_input(
        "Temperature", min_value=0.01, value=1.0, step=0.1, key="compare.temperature", disabled=not sampled
    )
    top_p = columns[4].number_input(
        "Top p",
        min_value=0.01,
        max_value=1.0,
        value=1.0,
        step=0.05,
        key="compare.top_p",
        disabled=not sampled,
    )
    reward_model = st.text_input(
        "Reward model (optional)",
        key="compare.reward_model",
        placeholder="a sequence-classification model: Hub id or local folder",
    )
    try:
        settings = GenerationSettings(
            max_new_tokens=int(max_new),
            do_sample=sampled,
            temperature=float(temperature),
            top_p=float(top_p),
            seed=int(seed),
        )
        return CompareRequest(
            runs=chosen,
            include_base=include_base,
            prompts=typed,
            settings=settings,
            limit=int(limit) or None,
            reward_model=reward_model,
        )
    except DeftError as error:
        show_error(error)
        return None


@st.fragment(run_every=1.0)
def job_progress(key: str) -> None:
    """Redraw the progress bar every second; rerun the whole page once the job has stopped."""
    status = compare_status(key)
    if status is None or not status.active:
        st.rerun()
    if status.state == "queued":
        st.progress(0.0, text="Waiting for another comparison to finish…")
    else:
        st.progress(
            status.fraction,
            text=f"{status.stage}: {status.done:.0f} of {status.total} {status.unit} · "
            f"{status.elapsed_s:.0f} s so far",
        )
    st.caption(
        "Generation runs on the server: you may switch pages or reload; this bar picks the job up again."
    )
    if st.button("Cancel", key="compare.cancel"):
        cancel_compare(key)
        st.toast("Cancelling after the current batch…")


def result_path() -> Path | None:
    """Return the results file to show, or None after showing why there is none."""
    view = st.session_state.get(VIEW_KEY)
    if view is None:
        st.info("Choose runs and prompts, then press Generate and compare.")
        return None
    kind, value = view
    if kind == "file":
        return Path(value)
    status = compare_status(value)
    if status is None:
        st.info("This comparison has not run yet, or its results were deleted.")
        return None
    if status.active:
        job_progress(value)
        return None
    if status.state == "failed":
        st.error(f"The comparison failed: {status.error}")
        return None
    if status.state != "done":
        st.warning(f"The comparison was {status.state} during {status.stage}. {status.error}")
        return None
    return Path(status.result)


@st.cache_data(show_spinner=False, max_entries=4)
def cached_comparison(path: str, stamp: float) -> Comparison:
    # Keyed by the file's modification time as well, so a rewritten file is read again.
    return load_comparison(path)


@st.cache_data(show_spinner="Building the HTML report…", max_entries=2)
def cached_html_report(path: str, stamp: float) -> str:
    return html_report(cached_comparison(path, stamp))


def label_html(label: str) -> str:
    return f"<b>{html.escape(label)}</b>"


def output_caption(row: dict) -> str:
    return " · ".join(f"{name} {format_number(row[name])}" for name in OUTPUT_COLUMNS if name in row)


def side_by_side(comparison: Comparison) -> None:
    """Show one prompt's outputs in columns, each diffed word by word against a chosen model's."""
    first = comparison.evaluations[0]
    prompts = [row["prompt"] for row in first.outputs]
    index = st.selectbox(
        "Prompt",
        range(len(prompts)),
        format_func=lambda i: f"{i + 1}: {' '.join(prompts[i].split())[:90]}",
        key="compare.prompt_index",
    )
    labels = comparison.labels
    against = st.selectbox("Mark differences against", labels, key="compare.against")
    reference_output = comparison.evaluations[labels.index(against)].outputs[index]["output"]
    st.html(text_block_html(prompts[index]))
    reference = first.outputs[index].get("reference")
    if reference:
        with st.expander("Chosen response (the BLEU reference)"):
            st.html(text_block_html(reference))
    for column, evaluation in zip(st.columns(len(labels)), comparison.evaluations, strict=True):
        row = evaluation.outputs[index]
        with column:
            st.html(label_html(evaluation.label))
            st.caption(output_caption(row))
            if evaluation.label == against:
                st.html(text_block_html(row["output"]))
            else:
                st.html(diff_html(reference_output, row["output"]))


def downloads(comparison: Comparison, path: Path) -> None:
    stamp = path.stat().st_mtime
    columns = st.columns(4)
    columns[0].download_button(
        "Report (Markdown)", markdown_report(comparison), file_name="comparison.md", key="compare.md"
    )
    columns[1].download_button(
        "Report (HTML)", cached_html_report(str(path), stamp), file_name="comparison.html", key="compare.html"
    )
    columns[2].download_button(
        "Results (JSON)",
        json.dumps(comparison.to_dict(), indent=1),
        file_name="results.json",
        key="compare.json",
    )
    if columns[3].button("Save reports with the results", key="compare.save"):
        try:
            written = [write_report(comparison, path.parent / name) for name in ("report.md", "report.html")]
        except (DeftError, OSError) as error:
            show_error(error)
        else:
            st.success("Saved " + " and ".join(str(p) for p in written))


def show_results(path: Path) -> None:
    try:
        comparison = cached_comparison(str(path), path.stat().st_mtime)
    except (DeftError, OSError) as error:
        show_error(error)
        return
    meta = comparison.meta
    st.success(
        f"{count_noun(len(comparison.evaluations), 'model')} on "
        f"{count_noun(len(comparison.evaluations[0].outputs), 'prompt')} "
        f"({meta['prompt_source']}). Saved in {path}."
    )
    for warning in comparison.warnings:
        st.warning(warning)
    st.subheader("Metrics")
    table = metrics_table(comparison)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.4g") for c in table.columns[1:]},
    )
    st.plotly_chart(fit_axes(metric_figure(comparison)), width="stretch")
    left, right = st.columns(2)
    reward = distribution_figure(comparison, "reward", "Distribution reward of each output")
    left.plotly_chart(fit_axes(reward), width="stretch")
    length = distribution_figure(comparison, "length", "Output length in tokens")
    right.plotly_chart(fit_axes(length), width="stretch")

    st.subheader("Outputs side by side")
    side_by_side(comparison)
    with st.expander("Every output"):
        st.dataframe(outputs_table(comparison), hide_index=True, width="stretch")
    downloads(comparison, path)


def saved_picker(runs: list[RunDir]) -> None:
    """Offer the comparisons saved in the runs' folders."""
    saved = [path for run in runs for path in saved_comparisons(run)]
    if not saved:
        return
    with st.expander(f"Saved comparisons ({len(saved)})"):
        names = {str(p): f"{p.parent.parent.parent.name} · {p.parent.name}" for p in saved}
        chosen = st.selectbox("Saved comparison", list(names), format_func=names.get, key="compare.saved")
        if st.button("Open", key="compare.open"):
            st.session_state[VIEW_KEY] = ("file", chosen)


runs = finished_runs()
if not runs:
    st.info("No finished run yet: a comparison needs a completed run with an adapter.")
    st.page_link("pages/train.py", label="Train one on the Train page", icon="▶️")
    st.stop()

request = request_form(runs)
if st.button("Generate and compare", type="primary", key="compare.start", disabled=request is None):
    try:
        status = start_compare(request, f"{', '.join(request.runs)} ({request.settings.describe()})")
    except DeftError as error:
        show_error(error)
    else:
        st.session_state[VIEW_KEY] = ("job", status.key)
saved_picker(runs)

path = result_path()
if path is not None:
    show_results(path)
