"""Dashboard settings shared by every page, their persistence, and the cached loaders pages use.

Settings live in st.session_state and in `deft_home()/dashboard/settings.json`, so a choice made
on one page holds on every page and survives a browser reload. The file is one per deft home,
shared by every tab: the dashboard is a single-user tool bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from deft_core import store
from deft_core.distributions import TokenDistributions
from deft_core.encoding import EncodedPair, PairEncoder
from deft_core.errors import DeftError
from deft_core.filtering import Selection
from deft_core.home import deft_home
from deft_core.loading import DataOptions, LoadedData, load_pairs, parse_columns
from deft_core.models import LoadedModel, load_model, load_tokenizer
from deft_core.scoring import ScoreOptions
from deft_core.sources import BUNDLED_SAMPLE, atomic_path

logger = logging.getLogger(__name__)

SETTINGS_KEY = "deft.settings"
BINDINGS_KEY = "deft.bindings"
DATA_SOURCES = ("sample", "upload", "path", "hub")
MODEL_SOURCES = ("bundled", "hub", "path")


@dataclass
class DashboardSettings:
    """Every choice the sidebar and the pages make; saved as JSON after each change."""

    model_source: str = "bundled"  # one of MODEL_SOURCES
    model_spec: str = ""  # Hub id or local folder / .gguf path, unused for "bundled"
    data_source: str = "sample"  # one of DATA_SOURCES
    data_path: str = ""  # local file or folder
    upload_path: str = ""  # where the last uploaded file was saved under deft_home()/uploads
    hub_id: str = ""
    hub_subset: str = ""
    hub_split: str = "train"
    columns: str = ""  # column mapping, "prompt=q,chosen=a,rejected=b"
    limit: int = 0  # read at most this many pairs; 0 reads all
    reward_form: str = "logprob"
    pair_score: str = "margin"
    template: str = "auto"
    alpha: float = 0.0
    max_length: int = 1024
    method: str = "top"  # selection method, see deft_core.filtering.Selection
    percent: float = 5.0  # for top, bottom and random
    threshold: float | None = None  # for threshold; None starts at the top-5% cut
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DashboardSettings:
        """Build settings from saved JSON, ignoring unknown keys and values of the wrong type."""
        settings = cls()
        for item in fields(cls):
            if item.name not in data:
                continue
            value, default = data[item.name], getattr(settings, item.name)
            if default is None or value is None or isinstance(value, type(default)):
                setattr(settings, item.name, value)
            elif isinstance(default, float) and isinstance(value, int):
                setattr(settings, item.name, float(value))
        return settings


def settings_path() -> Path:
    return deft_home() / "dashboard" / "settings.json"


def load_settings() -> DashboardSettings:
    path = settings_path()
    try:
        return DashboardSettings.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return DashboardSettings()
    except (json.JSONDecodeError, AttributeError) as error:
        logger.warning("ignoring unreadable dashboard settings %s: %s", path, error)
        return DashboardSettings()


def save_settings(settings: DashboardSettings) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(asdict(settings), indent=1), encoding="utf-8")


def current() -> DashboardSettings:
    """Return this session's settings, read from the settings file on the session's first run."""
    if SETTINGS_KEY not in st.session_state:
        st.session_state[SETTINGS_KEY] = load_settings()
    return st.session_state[SETTINGS_KEY]


def update(**changes: Any) -> None:
    """Change settings from code (not from a widget), keep bound widgets in step and save."""
    settings = current()
    for name, value in changes.items():
        setattr(settings, name, value)
        for key in st.session_state.get(BINDINGS_KEY, {}).get(name, ()):
            # Only widgets that differ are set: Streamlit rejects writes to a widget drawn in this run.
            if key in st.session_state and st.session_state[key] != value:
                st.session_state[key] = value
    save_settings(settings)


def store_widget(key: str, name: str) -> None:
    update(**{name: st.session_state[key]})


def bound(widget: Callable[..., Any], name: str, label: str, key: str | None = None, **kwargs: Any) -> Any:
    """Render a widget whose value is the setting `name`, starting from the saved value.

    Streamlit drops or detaches a page's widget state when the user moves to another page, so
    the widget is given the setting's value before every draw. Writing the key before the widget
    exists in a run is allowed, and the setting always contains the widget's latest value because
    store_widget runs before the script on every change.
    """
    key = key or f"setting.{name}"
    bindings = st.session_state.setdefault(BINDINGS_KEY, {})
    if key not in bindings.setdefault(name, []):
        bindings[name].append(key)
    st.session_state[key] = getattr(current(), name)
    return widget(label, key=key, on_change=store_widget, args=(key, name), **kwargs)


def data_options(settings: DashboardSettings) -> DataOptions:
    """Build the DataOptions of the chosen dataset; raises DeftError for a missing choice."""
    columns = parse_columns(settings.columns)
    limit = settings.limit or None
    if settings.data_source == "sample":
        return DataOptions("sample", columns=columns, limit=limit)
    if settings.data_source == "upload":
        if not settings.upload_path:
            raise DeftError("no file uploaded yet: choose a file in the sidebar")
        return DataOptions(settings.upload_path, columns=columns, limit=limit)
    if settings.data_source == "path":
        if not settings.data_path.strip():
            raise DeftError("no local path given: type a file or folder path in the sidebar")
        return DataOptions(settings.data_path.strip(), columns=columns, limit=limit)
    if not settings.hub_id.strip():
        raise DeftError("no Hugging Face dataset id given: type one in the sidebar, e.g. owner/name")
    return DataOptions(
        settings.hub_id.strip(),
        subset=settings.hub_subset.strip() or None,
        split=settings.hub_split.strip() or "train",
        columns=columns,
        limit=limit,
    )


def model_spec(settings: DashboardSettings) -> str:
    if settings.model_source == "bundled":
        return "bundled"
    if not settings.model_spec.strip():
        raise DeftError(
            "no model given: type a Hub id or a local path in the sidebar, or pick the bundled model"
        )
    return settings.model_spec.strip()


def score_options(settings: DashboardSettings) -> ScoreOptions:
    return ScoreOptions(
        reward_form=settings.reward_form,
        pair_score=settings.pair_score,
        template=settings.template,
        alpha=float(settings.alpha),
        max_length=int(settings.max_length),
    )


def selection(settings: DashboardSettings, scores: pd.Series) -> Selection:
    """Build the Selection of the settings; a missing threshold starts at the top-5% cut."""
    if settings.method == "threshold":
        return Selection("threshold", threshold_value(settings, scores))
    return Selection(settings.method, float(settings.percent), int(settings.seed))


def threshold_value(settings: DashboardSettings, scores: pd.Series) -> float:
    finite = scores[pd.notna(scores)]
    if settings.threshold is not None:
        return float(settings.threshold)
    return float(finite.quantile(0.95)) if len(finite) else 0.0


def file_stamp(options: DataOptions) -> str:
    """Identify the file version behind `options`, so that an edited file is read again."""
    path = BUNDLED_SAMPLE if options.path == "sample" else Path(options.path).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


# Each cached loader takes JSON text of its options: hashable, and equal for equal requests.


@st.cache_resource(show_spinner="Loading model…", max_entries=2)
def cached_model(spec: str) -> LoadedModel:
    return load_model(spec)


@st.cache_resource(show_spinner="Loading tokenizer…", max_entries=4)
def cached_tokenizer(spec: str) -> Any:
    return load_tokenizer(spec)


@st.cache_data(show_spinner="Reading dataset…", max_entries=4)
def cached_data(options_json: str, stamp: str) -> LoadedData:
    # A fresh copy per call: scoring adds "truncated" flags to the pairs it is given.
    return load_pairs(DataOptions(**json.loads(options_json)))


@st.cache_resource(show_spinner="Tokenising pairs…", max_entries=4)
def cached_encoded(
    options_json: str, stamp: str, spec: str, template: str, max_length: int
) -> list[EncodedPair]:
    data = cached_data(options_json, stamp)
    return PairEncoder(cached_tokenizer(spec), template, max_length).encode_many(data.pairs)


@st.cache_data(show_spinner="Counting tokens…", max_entries=8)
def cached_distributions(
    options_json: str, stamp: str, spec: str, template: str, max_length: int, alpha: float
) -> TokenDistributions:
    encoded = cached_encoded(options_json, stamp, spec, template, max_length)
    # The model's output size, which can exceed the tokenizer's length (padded embeddings).
    vocab_size = cached_model(spec).model.get_output_embeddings().weight.shape[0]
    return TokenDistributions.from_sequences(
        (e.chosen_ids for e in encoded),
        (e.rejected_ids for e in encoded),
        cached_tokenizer(spec),
        vocab_size,
        alpha,
    )


@st.cache_data(show_spinner="Reading cached scores…", max_entries=8)
def cached_scores(key: str) -> tuple[pd.DataFrame, dict]:
    cached = store.cached_scores(key)
    if cached is None:
        raise DeftError(f"no cached scores for key {key}")
    return cached


def show_error(error: Exception) -> None:
    """Show an error in the page; unexpected errors are logged with their traceback."""
    if isinstance(error, DeftError):
        st.error(str(error), icon="⚠️")
    else:
        logger.exception("dashboard error")
        st.error(f"Unexpected error: {type(error).__name__}: {error}", icon="⚠️")
