"""Data page: preview, detected format, load audit and length histograms of the chosen dataset."""

import pandas as pd
import streamlit as st

from deft_core import charts
from deft_core.audit import PAIR_WARNINGS, ROW_ERRORS
from deft_core.dashboard_context import page_header, require_data
from deft_core.dashboard_state import cached_encoded, model_spec, show_error
from deft_core.explore import length_frame, pairs_frame
from deft_core.text import count_noun

page_header(
    "Data",
    "Every row of the dataset becomes a preference pair: a prompt $x$ with a chosen response "
    "$y_w$ and a rejected response $y_l$. Rows that cannot form a pair are skipped, and pairs "
    "with a problem are kept and flagged; the audit below lists both with examples.",
    [r"\mathcal{D} = \{(x_i,\ y_{w,i},\ y_{l,i})\}_{i=1}^{N}"],
)

context = require_data()
data, audit = context.data, context.data.audit

columns = st.columns(4)
columns[0].metric("Pairs loaded", audit.pairs_loaded)
columns[1].metric("Rows read", audit.rows_read)
columns[2].metric("Rows skipped", audit.rows_skipped)
columns[3].metric("Detected format", audit.format)
st.caption(f"Source: {audit.source}")

st.subheader("Load audit")
problems = [kind for kind in (*ROW_ERRORS, *PAIR_WARNINGS) if audit.counts.get(kind)]
if not problems:
    st.success("No row was skipped and no pair was flagged.")
for kind in problems:
    count = audit.counts[kind]
    if kind in ROW_ERRORS:
        action = f"{count_noun(count, 'row')} skipped"
    else:
        action = f"{count_noun(count, 'pair')} kept and flagged"
    description = ROW_ERRORS.get(kind) or PAIR_WARNINGS[kind]
    with st.expander(f"{kind}: {action}: {description}"):
        examples = pd.DataFrame(
            [
                {"where": audit.where(e.line), "field": e.field, "message": e.message, "snippet": e.snippet}
                for e in audit.examples.get(kind, [])
            ]
        )
        st.dataframe(examples, hide_index=True, width="stretch")
        st.caption(f"Showing the first {len(examples)} of {audit.counts[kind]}.")

st.subheader("Preview")
st.dataframe(pairs_frame(data.pairs), hide_index=True, width="stretch", height=320)

st.subheader("Lengths")
try:
    settings = context.settings
    encoded = cached_encoded(
        context.options_json, context.stamp, model_spec(settings), settings.template, int(settings.max_length)
    )
except Exception as error:  # lengths need the tokenizer, whose failure must not hide the audit
    show_error(error)
else:
    lengths = length_frame(data.pairs, encoded)
    st.plotly_chart(charts.length_histogram(lengths), width="stretch")
    st.caption(
        "Tokens of the selected model's tokenizer after the length limit; a response includes the "
        "token that ends the assistant turn."
    )
    st.dataframe(
        lengths.drop(columns="pair_id").describe().loc[["mean", "50%", "max"]].round(1),
        width="stretch",
    )
