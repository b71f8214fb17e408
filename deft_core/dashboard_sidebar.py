"""The sidebar every dashboard page shares: model, dataset and scoring options.

Every page draws it through dashboard_context.page_header. Its widgets are bound to the saved
settings (dashboard_state.bound), so a choice holds when the user moves to another page.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import streamlit as st

from deft_core.dashboard_state import DATA_SOURCES, MODEL_SOURCES, bound, current, update
from deft_core.home import deft_home

logger = logging.getLogger(__name__)

MODEL_LABELS = {
    "bundled": "Bundled SmolLM2-135M-Instruct",
    "hub": "Hugging Face Hub id",
    "path": "Local folder or .gguf file",
}
DATA_LABELS = {
    "sample": "Bundled sample (260 HH-style pairs)",
    "upload": "Upload a file",
    "path": "Local file or folder",
    "hub": "Hugging Face Hub dataset",
}
UPLOAD_TYPES = ["jsonl", "gz", "json", "parquet", "csv"]


def save_upload(name: str, content: bytes) -> Path:
    """Save an uploaded file under deft_home()/uploads/<content hash>/ and return its path.

    The name keeps its extension, which selects the reader. The content hash keeps two different
    files of the same name apart, so a repeated upload of one file is a no-op.
    """
    digest = hashlib.sha256(content).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "upload.jsonl"
    path = deft_home() / "uploads" / digest / safe
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        logger.info("saved upload %s (%d bytes) to %s", name, len(content), path)
    return path


def render_model_section() -> None:
    st.subheader("Model")
    bound(st.radio, "model_source", "Scoring model", options=MODEL_SOURCES, format_func=MODEL_LABELS.get)
    if current().model_source == "hub":
        bound(st.text_input, "model_spec", "Hub model id", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct")
    elif current().model_source == "path":
        bound(st.text_input, "model_spec", "Model folder or .gguf file", placeholder="/path/to/model")


def render_upload() -> None:
    limit_mb = st.get_option("server.maxUploadSize")
    uploaded = st.file_uploader(
        "Preference file",
        type=UPLOAD_TYPES,
        key="upload_file",
        help=f"JSON Lines (.jsonl, .jsonl.gz), JSON, Parquet or CSV, at most {limit_mb} MB. "
        "Give a larger file as a local path instead.",
    )
    if uploaded is not None:
        path = str(save_upload(uploaded.name, uploaded.getvalue()))
        if path != current().upload_path:
            update(upload_path=path)
    if current().upload_path:
        st.caption(f"Using upload: {Path(current().upload_path).name}")
    st.caption(f"Uploads are limited to {limit_mb} MB; a larger file is rejected by the upload box.")


def render_data_section() -> None:
    st.subheader("Dataset")
    bound(st.radio, "data_source", "Preference data", options=DATA_SOURCES, format_func=DATA_LABELS.get)
    source = current().data_source
    if source == "upload":
        render_upload()
    elif source == "path":
        bound(
            st.text_input,
            "data_path",
            "Local file or dataset folder",
            placeholder="/data/pairs.jsonl",
            help="A .jsonl, .jsonl.gz, .json, .parquet or .csv file, or a folder of data files.",
        )
    elif source == "hub":
        bound(st.text_input, "hub_id", "Dataset id", placeholder="Anthropic/hh-rlhf")
        bound(st.text_input, "hub_subset", "Subset (configuration)", placeholder="optional")
        bound(st.text_input, "hub_split", "Split")
    bound(
        st.text_input,
        "columns",
        "Column mapping (optional)",
        placeholder="prompt=question,chosen=good,rejected=bad",
        help="Maps deft's prompt, chosen and rejected fields onto your column names.",
    )
    bound(
        st.number_input,
        "limit",
        "Read at most this many pairs (0 = all)",
        min_value=0,
        step=1,
        help="A small limit makes a quick first look; scores are cached per limit.",
    )


def render_scoring_section() -> None:
    with st.expander("Scoring options"):
        bound(
            st.selectbox,
            "reward_form",
            "Reward form",
            options=("logprob", "prob"),
            help="logprob: r = mean over tokens of Q_diff · log p_t. "
            "prob: r = mean over tokens of Q_diff · p_t.",
        )
        bound(
            st.selectbox,
            "pair_score",
            "Pair score",
            options=("margin", "chosen"),
            help="margin: s = r(chosen) − r(rejected). chosen: s = r(chosen).",
        )
        bound(
            st.selectbox,
            "template",
            "Prompt template",
            options=("auto", "chat", "raw"),
            help="auto uses the model's chat template when it has one, else raw Human/Assistant text.",
        )
        bound(
            st.number_input,
            "alpha",
            "Smoothing alpha",
            min_value=0.0,
            step=0.1,
            format="%.3f",
            help="Added to every token count before Q+ and Q- are normalised.",
        )
        bound(
            st.number_input,
            "max_length",
            "Max length (tokens)",
            min_value=8,
            max_value=32768,
            step=64,
            help="Prompt + response tokens; longer pairs are cut and flagged as truncated.",
        )


def render_sidebar() -> None:
    """Render the shared sidebar; every change is saved to the settings at once."""
    with st.sidebar:
        render_model_section()
        render_data_section()
        render_scoring_section()
