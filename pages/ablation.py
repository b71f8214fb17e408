"""Ablation: train top k% vs random k% vs the full set, with and without guidance, and compare them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from deft_core import charts
from deft_core.ablation import results as tables
from deft_core.ablation.config import AblationConfig, ablation_field_help, load_ablation_config
from deft_core.ablation.folder import (
    AblationDir,
    create_ablation,
    launch_ablation,
    list_ablations,
    progress_summary,
)
from deft_core.dashboard_context import page_header
from deft_core.dashboard_state import current
from deft_core.errors import DeftError
from deft_core.text import count_noun
from deft_core.training.config import DEFAULT_OMEGA, METHODS

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
HELP = ablation_field_help()


def sidebar_dataset() -> tuple[str, str] | None:
    """Return (data, model) of the sidebar's choice when training can read it, else None."""
    settings = current()
    data = {
        "sample": "sample",
        "path": settings.data_path,
        "upload": settings.upload_path,
    }.get(settings.data_source, "")
    model = settings.model_spec if settings.model_source != "bundled" else "bundled"
    return (data, model) if data and model else None


def settings_form(preset: AblationConfig) -> dict:
    """Draw the settings widgets, starting from a preset; return the values they hold."""
    source = st.session_state.get("ablation.source")
    left, middle, right = st.columns(3)
    values: dict = {}
    with left:
        values["data"] = st.text_input("Data", value=source[0] if source else preset.data, help=HELP["data"])
        values["scores"] = st.text_input("Score file", value=preset.scores, help=HELP["scores"])
        values["model"] = st.text_input(
            "Model", value=source[1] if source else preset.model, help=HELP["model"]
        )
        values["k_percent"] = st.number_input(
            "k (%)", min_value=0.1, max_value=99.9, value=preset.k_percent, help=HELP["k_percent"]
        )
    with middle:
        values["method"] = st.selectbox(
            "Method", METHODS, index=METHODS.index(preset.method), help=HELP["method"]
        )
        omega = preset.omega if preset.omega is not None else DEFAULT_OMEGA[values["method"]]
        values["omega"] = st.number_input(
            "omega of the guided variants", min_value=0.001, value=float(omega), step=0.5, help=HELP["omega"]
        )
        values["max_steps"] = int(
            st.number_input("Steps per variant", min_value=1, value=preset.max_steps, help=HELP["max_steps"])
        )
        values["learning_rate"] = st.number_input(
            "Learning rate",
            min_value=1e-7,
            value=preset.learning_rate,
            format="%.1e",
            help=HELP["learning_rate"],
        )
        values["max_length"] = int(
            st.number_input("Max length", min_value=16, value=preset.max_length, help=HELP["max_length"])
        )
    with right:
        values["seed"] = int(st.number_input("Seed", value=preset.seed, help=HELP["seed"]))
        values["eval_size"] = int(
            st.number_input("Held-out pairs", min_value=1, value=preset.eval_size, help=HELP["eval_size"])
        )
        values["eval_limit"] = int(
            st.number_input(
                "Pairs with generations",
                min_value=1,
                value=preset.eval_limit or preset.eval_size,
                help=HELP["eval_limit"],
            )
        )
        values["max_new_tokens"] = int(
            st.number_input(
                "New tokens per generation",
                min_value=1,
                value=preset.max_new_tokens,
                help=HELP["max_new_tokens"],
            )
        )
    return values


def ablations_table(ablations: list[AblationDir]) -> pd.DataFrame:
    rows = []
    for ablation in ablations:
        status = ablation.status()
        rows.append(
            {
                "ablation": ablation.ablation_id,
                "state": status["state"],
                "models evaluated": len(status.get("finished", [])),
                "current": status.get("current_variant") if status["state"] == "running" else None,
                "updated": status.get("updated_at"),
            }
        )
    return pd.DataFrame(rows)


def results_view(ablation: AblationDir) -> None:
    """Show the results table and charts of the models evaluated so far."""
    results = ablation.results()
    rows = results["rows"]
    if not rows:
        st.info("No model evaluated yet: the base model is evaluated first, then each variant in turn.")
        return
    frame = tables.results_frame(rows)
    show_all = st.toggle("All columns", key=f"columns-{ablation.ablation_id}")
    shown = frame if show_all else frame[list(tables.SUMMARY_COLUMNS)]
    st.dataframe(shown, hide_index=True, width="stretch")
    held_out = results.get("held_out_pairs", 0)
    evaluated = results.get("generation_prompts", 0)
    st.caption(
        f"preference_accuracy, logprob_accuracy, reward_mean, BLEU and perplexity: evaluate_model on "
        f"the first {count_noun(evaluated, 'held-out pair')}. "
        "dpo_reward_accuracy and run_logprob_accuracy: each "
        f"run's final evaluation on all {count_noun(held_out, 'held-out pair')}, where one pair is "
        f"{1 / max(held_out, 1):.3f} of accuracy. The base model's preference_accuracy compares "
        "mean token log-probs, a run's compares DPO implicit rewards."
    )
    st.caption("Green bars: guidance on. Blue bars: guidance off, and the base model.")
    columns = st.columns(2)
    for index, figure in enumerate(tables.figures(rows, held_out, evaluated).values()):
        title, figure = charts.pop_title(figure)
        columns[index % 2].markdown(f"**{title}**")
        columns[index % 2].plotly_chart(charts.legend_below(charts.fit_axes(figure)), width="stretch")
    st.download_button(
        "Download results.csv",
        tables.csv_text(rows),
        file_name=f"{ablation.ablation_id}.csv",
        mime="text/csv",
        key=f"csv-{ablation.ablation_id}",
    )
    if ablation.plots_path.is_file():
        st.caption(f"Charts as one HTML file: {ablation.plots_path}")


def ablation_panel(ablation: AblationDir) -> None:
    """Show one ablation's state, progress, cancel or resume button, results and log tail."""
    status = ablation.status()
    state = status["state"]
    fraction, line = progress_summary(ablation)
    st.markdown(f"**{ablation.ablation_id}**: {state}")
    st.progress(fraction, text=line)
    if state == "failed" and status.get("error"):
        st.error(status["error"])
    if state == "running" and st.button("Cancel ablation", key=f"cancel-{ablation.ablation_id}"):
        ablation.request_cancel()
        st.toast("cancel requested: the current run saves a checkpoint after its current step")
    if state in ("cancelled", "failed", "pending") and st.button(
        "Resume ablation", key=f"resume-{ablation.ablation_id}"
    ):
        try:
            launch_ablation(ablation)
        except DeftError as error:
            st.error(str(error))
    results_view(ablation)
    with st.expander("Config"):
        st.code(ablation.config_path.read_text(encoding="utf-8"), language="yaml")
    with st.expander("Log tail"):
        st.code(ablation.log_tail() or "(empty)", language="text")


@st.fragment(run_every=5)
def live_view(ablation_id: str) -> None:
    """Redraw the selected ablation every 5 s, so progress and results update without a page rerun."""
    ablation = next((a for a in list_ablations() if a.ablation_id == ablation_id), None)
    if ablation is not None:
        ablation_panel(ablation)


def main() -> None:
    page_header(
        "Ablation",
        "Does a small subset chosen by the distribution reward, plus guidance, train as well as the "
        "full set? Six LoRA runs with the same seed, step budget and held-out pairs: the top $k$% "
        "by DEFT score, a random $k$%, and every pair, each with guidance ($\\omega > 0$) and "
        "without ($\\omega = 0$). The base model and each run are then evaluated on the held-out pairs.",
        [r"\mathcal{L}_{\mathrm{DEFT}} = \mathcal{L}_{\mathrm{base}} - \omega\, s_\theta(x, y_w, y_l)"],
    )
    presets = sorted(CONFIGS.glob("ablation-*.yaml"))
    names = [p.name for p in presets]
    preset_name = st.selectbox(
        "Preset", names, index=names.index("ablation-sample.yaml") if "ablation-sample.yaml" in names else 0
    )
    source = sidebar_dataset()
    if source and st.button(
        "Use the sidebar's dataset and model", help=f"data: {source[0]}, model: {source[1]}"
    ):
        st.session_state["ablation.source"] = source
    try:
        preset = load_ablation_config(CONFIGS / preset_name)
        config = load_ablation_config(CONFIGS / preset_name, settings_form(preset))
    except DeftError as error:
        st.error(str(error))
        return
    with st.expander("Resolved config"):
        st.code(config.to_yaml(), language="yaml")
    problems = config.missing_files()
    for problem in problems:
        st.error(problem)
    if st.button("Start ablation", type="primary", disabled=bool(problems)):
        ablation = create_ablation(config)
        launch_ablation(ablation)
        st.session_state["ablation"] = ablation.ablation_id

    st.subheader("Ablations")
    ablations = list_ablations()
    if not ablations:
        st.info("No ablations yet.")
        return
    st.dataframe(ablations_table(ablations), hide_index=True, width="stretch")
    ids = [a.ablation_id for a in ablations]
    selected = st.session_state.get("ablation")
    chosen = st.selectbox("Show ablation", ids, index=ids.index(selected) if selected in ids else 0)
    live_view(chosen)


main()
