"""Page inputs of the dashboard: the dataset, the model and the cached scores.

Each `require_*` helper shows a clear message and stops the page when its input is missing or
invalid, so pages never show a traceback for a user's mistake.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pandas as pd
import streamlit as st

from deft_core import store
from deft_core.dashboard_sidebar import render_sidebar
from deft_core.dashboard_state import (
    DashboardSettings,
    cached_data,
    cached_model,
    cached_scores,
    current,
    data_options,
    file_stamp,
    model_spec,
    score_options,
    show_error,
)
from deft_core.encoding import resolve_template
from deft_core.errors import DeftError
from deft_core.jobs import score_request_key
from deft_core.loading import DataOptions, LoadedData
from deft_core.models import LoadedModel
from deft_core.scoring import ScoreOptions

REWARDS_PAGE = "pages/rewards.py"


@dataclass
class DataContext:
    """The chosen dataset, loaded, with the cache arguments that identify it."""

    settings: DashboardSettings
    options: DataOptions
    options_json: str
    stamp: str
    data: LoadedData


@dataclass
class ScoreContext:
    """A dataset with the model, the scoring options and the cache key of their scores."""

    data: DataContext
    loaded: LoadedModel
    spec: str
    score_options: ScoreOptions
    template: str  # resolved: "chat" or "raw"
    key: str

    @property
    def has_scores(self) -> bool:
        return store.cache_entry(self.key).is_file()

    def scores(self) -> tuple[pd.DataFrame, dict]:
        return cached_scores(self.key)


def page_header(title: str, explanation: str, formulas: list[str]) -> None:
    """Draw the shared sidebar, then the page's title, explanation and formulas."""
    render_sidebar()
    st.title(title)
    st.markdown(explanation)
    for formula in formulas:
        st.latex(formula)


def require_data() -> DataContext:
    settings = current()
    try:
        options = data_options(settings)
        options_json = json.dumps(options.to_dict(), sort_keys=True)
        stamp = file_stamp(options)
        data = cached_data(options_json, stamp)
    except Exception as error:  # any reader error is shown, not raised: the input is the user's
        show_error(error)
        st.info("Fix the dataset choice in the sidebar; the message above says what failed.")
        st.stop()
    return DataContext(settings, options, options_json, stamp, data)


def require_model(settings: DashboardSettings) -> tuple[str, LoadedModel]:
    try:
        spec = model_spec(settings)
        return spec, cached_model(spec)
    except Exception as error:  # a model that fails to load is the user's choice to fix
        show_error(error)
        st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def cached_request_key(options_json: str, stamp: str, spec: str, score_json: str) -> str:
    data = cached_data(options_json, stamp)
    return score_request_key(data, cached_model(spec), ScoreOptions(**json.loads(score_json)))


def require_score_context() -> ScoreContext:
    """Load data and model and compute the cache key of their scores; no scoring happens here."""
    context = require_data()
    spec, loaded = require_model(context.settings)
    try:
        options = score_options(context.settings)
        template = resolve_template(loaded.tokenizer, options.template)
        key = cached_request_key(
            context.options_json, context.stamp, spec, json.dumps(asdict(options), sort_keys=True)
        )
    except DeftError as error:
        show_error(error)
        st.stop()
    return ScoreContext(context, loaded, spec, options, template, key)


def require_scores() -> tuple[ScoreContext, pd.DataFrame, dict]:
    """Return the cached scores of the current choices, or point to the Rewards page and stop."""
    context = require_score_context()
    if not context.has_scores:
        st.warning("These pairs are not scored yet with the current model and options.")
        st.page_link(REWARDS_PAGE, label="Score them on the Rewards and threshold page", icon="▶️")
        st.stop()
    table, meta = context.scores()
    return context, table, meta
