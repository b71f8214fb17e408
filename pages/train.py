"""Train: start guided LoRA runs in a separate process and follow their curves, logs and status."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from deft_core.errors import DeftError
from deft_core.training.config import (
    DEFAULT_OMEGA,
    METHODS,
    SELECTIONS,
    TrainConfig,
    field_help,
    field_types,
    load_config,
)
from deft_core.training.runs import RunDir, create_run, launch, list_runs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CURVES = [
    ("Loss", ["train/loss", "eval/loss"]),
    ("Reward margins", ["train/rewards/margins", "eval/rewards/margins"]),
    ("Accuracy", ["train/rewards/accuracies", "eval/rewards/accuracies", "eval/preference_accuracy"]),
    ("Guidance term", ["train/guidance", "eval/guidance"]),
]
HELP = field_help()


def seconds_per_pair(runs: list[RunDir]) -> float | None:
    """Return the median measured seconds per training pair over recent runs, or None."""
    samples = []
    for run in runs[:5]:
        config = run.config()
        pairs_per_step = config.batch_size * config.grad_accum
        samples += [r["train/seconds"] / pairs_per_step for r in run.metrics() if "train/seconds" in r]
    return median(samples) if samples else None


def settings_form(preset: TrainConfig) -> dict:
    """Draw the settings widgets, starting from a preset; return the changed fields."""
    left, middle, right = st.columns(3)
    values: dict = {}
    with left:
        values["method"] = st.selectbox(
            "Method", METHODS, index=METHODS.index(preset.method), help=HELP["method"]
        )
        guided = st.toggle(
            "DEFT guidance", value=preset.guidance_weight > 0, help="off trains the plain method"
        )
        default = preset.omega if preset.omega is not None else DEFAULT_OMEGA[values["method"]]
        omega = st.number_input(
            "omega", min_value=0.0, value=float(default), step=0.5, help=HELP["omega"], disabled=not guided
        )
        values["omega"] = omega if guided else 0.0
        values["beta"] = st.number_input("beta (DPO)", min_value=0.001, value=preset.beta, help=HELP["beta"])
    with middle:
        values["lora_r"] = int(
            st.number_input("LoRA rank", min_value=1, value=preset.lora_r, help=HELP["lora_r"])
        )
        values["lora_alpha"] = int(st.number_input("LoRA alpha", min_value=1, value=preset.lora_alpha))
        values["learning_rate"] = st.number_input(
            "Learning rate",
            min_value=1e-7,
            value=preset.learning_rate,
            format="%.1e",
            help=HELP["learning_rate"],
        )
        steps = st.number_input(
            "Max steps (0: one pass per epoch setting)",
            min_value=0,
            value=preset.max_steps or 0,
            help=HELP["max_steps"],
        )
        values["max_steps"] = int(steps) or None
        values["max_length"] = int(
            st.number_input("Max length", min_value=16, value=preset.max_length, help=HELP["max_length"])
        )
    with right:
        values["data"] = st.text_input("Data", value=preset.data, help=HELP["data"])
        values["selection"] = st.selectbox(
            "Training subset", SELECTIONS, index=SELECTIONS.index(preset.selection), help=HELP["selection"]
        )
        values["selection_value"] = st.number_input(
            "Subset value (% or score)", value=preset.selection_value, help=HELP["selection_value"]
        )
        values["scores"] = st.text_input("Score file", value=preset.scores or "", help=HELP["scores"]) or None
        values["eval_size"] = int(
            st.number_input("Held-out pairs", min_value=0, value=preset.eval_size, help=HELP["eval_size"])
        )
    return values


def field_text(value) -> str:
    """Show a config value as the text a flag or YAML scalar would take: lists as A,B, dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value) if value else ""
    return str(value)


def more_settings(preset: TrainConfig, in_main_form: set[str]) -> dict:
    """Draw every config field that the main form does not, as text; return the changed ones.

    Values go through the same checks as a YAML file, so a bad one shows the config's own error.
    Dict fields (columns) take JSON; an unreadable one is reported and left out.
    """
    values: dict = {}
    types = field_types()
    names = [name for name in HELP if name not in in_main_form]
    with st.expander(f"More settings ({len(names)} fields)"):
        columns = st.columns(3)
        for index, name in enumerate(names):
            current = getattr(preset, name)
            key = f"train.more.{name}"
            with columns[index % 3]:
                if types[name] is bool:
                    value = st.checkbox(name, value=bool(current), help=HELP[name], key=key)
                    if value != current:
                        values[name] = value
                    continue
                text = st.text_input(name, value=field_text(current), help=HELP[name], key=key)
            if text == field_text(current):
                continue
            if types[name] is dict and text.strip():
                try:
                    values[name] = json.loads(text)
                except json.JSONDecodeError:
                    st.error(f'{name} takes a JSON object such as {{"prompt": "question"}}, got {text!r}')
                continue
            values[name] = text
    return values


def curves(run: RunDir) -> None:
    records = run.metrics()
    if not records:
        st.info("No metrics yet: the run is loading the model and computing reference log-probs.")
        return
    frame = pd.DataFrame(records)
    columns = st.columns(2)
    for index, (title, names) in enumerate(CURVES):
        figure = go.Figure()
        for name in names:
            if name in frame:
                points = frame[["step", name]].dropna()
                figure.add_trace(
                    go.Scatter(x=points["step"], y=points[name], mode="lines+markers", name=name)
                )
        figure.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step")
        columns[index % 2].plotly_chart(figure, use_container_width=True)


def run_panel(run: RunDir) -> None:
    """Show one run's status, curves, log tail and its cancel or resume button."""
    status = run.status()
    state = status["state"]
    st.markdown(
        f"**{run.run_id}**: {state}, step {status.get('step', 0)} of {status.get('total_steps', '?')}"
    )
    if state == "failed" and status.get("error"):
        st.error(status["error"])
    if state == "running" and st.button("Cancel run", key=f"cancel-{run.run_id}"):
        run.request_cancel()
        st.toast("cancel requested: the run saves a checkpoint after the current step")
    if state in ("cancelled", "failed", "pending") and st.button("Resume run", key=f"resume-{run.run_id}"):
        try:
            launch(run)
        except DeftError as error:
            st.error(str(error))
    curves(run)
    with st.expander("Log tail"):
        st.code(run.log_tail() or "(empty)", language="text")
    summary = run.summary()
    if summary:
        with st.expander("Summary"):
            st.json(summary)


def runs_table(runs: list[RunDir]) -> pd.DataFrame:
    rows = []
    for run in runs:
        status = run.status()
        rows.append(
            {
                "run": run.run_id,
                "state": status["state"],
                "step": status.get("step", 0),
                "total steps": status.get("total_steps"),
                "updated": status.get("updated_at"),
            }
        )
    return pd.DataFrame(rows)


@st.fragment(run_every=5)
def live_table() -> None:
    """Redraw the runs table every 5 s, so states and steps follow the running processes."""
    st.dataframe(runs_table(list_runs()), hide_index=True, use_container_width=True)


@st.fragment(run_every=5)
def live_view(run_id: str) -> None:
    """Redraw the selected run every 5 s, so running curves update without rerunning the page."""
    run = next((r for r in list_runs() if r.run_id == run_id), None)
    if run is not None:
        run_panel(run)


def main() -> None:
    st.title("Train")
    st.caption("LoRA training with L = L_base - omega * s_theta; each run is a separate process.")
    presets = sorted(CONFIGS.glob("*.yaml"))
    names = [p.name for p in presets]
    preset_name = st.selectbox(
        "Preset", names, index=names.index("sample-dpo.yaml") if "sample-dpo.yaml" in names else 0
    )
    try:
        preset = load_config(CONFIGS / preset_name)
    except DeftError as error:
        st.error(str(error))
        return
    overrides = settings_form(preset)
    overrides.update(more_settings(preset, in_main_form=set(overrides)))
    try:
        config = load_config(CONFIGS / preset_name, overrides)
    except DeftError as error:
        st.error(str(error))
        return
    with st.expander("Resolved config"):
        st.code(config.to_yaml(), language="yaml")

    runs = list_runs()
    rate = seconds_per_pair(runs)
    if rate is not None and config.max_steps:
        estimate = rate * config.max_steps * config.batch_size * config.grad_accum
        st.caption(
            f"Estimated training time: about {estimate / 60:.1f} min at {rate:.1f} s per pair "
            "(measured on recent runs; model loading and evaluation come on top)."
        )
    else:
        st.caption("No time estimate yet: it needs a finished step from an earlier run, and max steps set.")
    problems = config.missing_files()
    for problem in problems:
        st.error(problem)
    if st.button("Start run", type="primary", disabled=bool(problems)):
        run = create_run(config)
        launch(run)
        st.session_state["train_run"] = run.run_id
        runs = list_runs()

    st.subheader("Runs")
    if not runs:
        st.info("No runs yet.")
        return
    live_table()
    ids = [r.run_id for r in runs]
    current = st.session_state.get("train_run")
    selected = st.selectbox("Show run", ids, index=ids.index(current) if current in ids else 0)
    live_view(selected)


main()
