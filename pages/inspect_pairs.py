"""Inspect pairs page: kept and dropped tables, and one pair with per-token reward contributions."""

import pandas as pd
import streamlit as st

from deft_core.contributions import pair_contributions
from deft_core.dashboard_context import page_header, require_scores
from deft_core.dashboard_state import cached_data, current, selection, show_error
from deft_core.distributions import TokenDistributions
from deft_core.explore import (
    contribution_scale,
    legend_html,
    scored_pairs_frame,
    search_frame,
    text_html,
    token_html,
)
from deft_core.filtering import select

page_header(
    "Inspect pairs",
    "Browse the kept and dropped pairs of the current selection and open one pair. Each response "
    "token is coloured by its contribution to the response's reward: token $t$ adds "
    "$\\frac{1}{T} Q_{\\mathrm{diff}} \\cdot \\log \\mathrm{softmax}(z_t)$ (or the prob form), so the "
    "colours of a response sum to its reward $r$.",
    [
        r"r(y) = \sum_{t=1}^{T} \underbrace{\tfrac{1}{T}\, Q_{\mathrm{diff}} \cdot "
        r"\log \mathrm{softmax}(z_t)}_{\text{token } t}"
    ],
)

context, table, meta = require_scores()
data = cached_data(context.data.options_json, context.data.stamp)
chosen_selection = selection(current(), table["score"])
keep = select(table["score"].to_numpy(), chosen_selection)


@st.cache_data(show_spinner=False, max_entries=4)
def joined_table(key: str, _table: pd.DataFrame, _pairs: list) -> pd.DataFrame:
    # Cached by score key alone: the table and pairs are fixed by it.
    return scored_pairs_frame(_table, _pairs)


joined = joined_table(context.key, table, data.pairs)
joined.insert(0, "kept", keep)

st.caption(f"Selection: {chosen_selection.describe()} (change it on the Rewards and threshold page).")
query = st.text_input("Search pair id, prompt or responses", key="inspect.query")
kept_tab, dropped_tab = st.tabs([f"Kept ({int(keep.sum())})", f"Dropped ({int((~keep).sum())})"])
for tab, mask in ((kept_tab, keep), (dropped_tab, ~keep)):
    with tab:
        rows = search_frame(joined[mask], query, ["pair_id", "prompt", "chosen", "rejected"])
        st.dataframe(
            rows.sort_values("score", ascending=False),
            hide_index=True,
            width="stretch",
            height=280,
            column_config={"score": st.column_config.NumberColumn(format="%.4g")},
        )

st.subheader("Pair view")
matches = search_frame(joined, query, ["pair_id", "prompt", "chosen", "rejected"]).sort_values(
    "score", ascending=False
)
if matches.empty:
    st.info("No pair matches the search.")
    st.stop()
labels = {
    row.pair_id: f"{'kept' if row.kept else 'dropped'} · s={row.score:.4g} · {row.prompt[:70]}"
    for row in matches.itertuples()
}
pair_id = st.selectbox("Pair", options=list(labels), format_func=labels.get, key="inspect.pair")
pair = next(p for p in data.pairs if p.id == pair_id)
row = joined.set_index("pair_id").loc[pair_id]


@st.cache_data(show_spinner="Scoring the pair token by token…", max_entries=64)
def cached_contributions(key: str, pair_id: str, _pair, _meta: dict):
    # Cached by score key and pair id, which fix the pair, the model and Q_diff.
    options = _meta["options"]
    return pair_contributions(
        context.loaded,
        _pair,
        TokenDistributions.from_dict(_meta["distributions"]).q_diff,
        options["reward_form"],
        options["template"],
        int(options["max_length"]),
    )


try:
    chosen_tokens, rejected_tokens = cached_contributions(context.key, pair_id, pair, meta)
except Exception as error:  # a failed pass must leave the tables usable
    show_error(error)
    st.stop()

scale = contribution_scale(chosen_tokens.contributions, rejected_tokens.contributions)
st.markdown(
    f"**{'Kept' if row['kept'] else 'Dropped'}** · pair score s = {row['score']:.4g} · line {row['line']}"
    + (f" · flags: {row['flags']}" if row["flags"] else "")
)
st.html(legend_html(scale))
prompt_column, chosen_column, rejected_column = st.columns(3)
with prompt_column:
    st.markdown("**Prompt**")
    st.html(text_html(pair.prompt_text))
with chosen_column:
    st.markdown(f"**Chosen** · r = {row['reward_chosen']:.4g} · {len(chosen_tokens.pieces)} tokens")
    st.html(token_html(chosen_tokens.pieces, chosen_tokens.contributions, scale))
with rejected_column:
    st.markdown(f"**Rejected** · r = {row['reward_rejected']:.4g} · {len(rejected_tokens.pieces)} tokens")
    st.html(token_html(rejected_tokens.pieces, rejected_tokens.contributions, scale))
st.caption(
    f"Recomputed for this view: r(chosen) = {chosen_tokens.reward:.4g}, "
    f"r(rejected) = {rejected_tokens.reward:.4g}. "
    "Small differences from the table come from batching in reduced precision."
)
