"""Token distributions page: Q+, Q- and the tokens with the largest Q_diff on either side."""

import streamlit as st

from deft_core import charts
from deft_core.dashboard_context import page_header, require_data, require_model
from deft_core.dashboard_state import bound, cached_distributions, show_error
from deft_core.explore import search_tokens

page_header(
    "Token distributions",
    "DEFT compares how often each token appears in chosen and in rejected responses. With token "
    "counts $c^+(v)$ over all chosen responses, $c^-(v)$ over all rejected ones (special tokens "
    "excluded) and smoothing $\\alpha$:",
    [
        r"Q^+(v) = \frac{c^+(v) + \alpha}{\sum_u \left(c^+(u) + \alpha\right)}, \qquad "
        r"Q^-(v) = \frac{c^-(v) + \alpha}{\sum_u \left(c^-(u) + \alpha\right)}",
        r"Q_{\mathrm{diff}}(v) = Q^+(v) - Q^-(v), \qquad \sum_v Q_{\mathrm{diff}}(v) = 0",
    ],
)
st.caption("Tokens are shown decoded, with · for a space, ↵ for a newline and → for a tab.")

context = require_data()
spec, loaded = require_model(context.settings)
settings = context.settings

left, right = st.columns(2)
with left:
    bound(
        st.number_input,
        "alpha",
        "Smoothing alpha (also used for scoring)",
        key="tokens.alpha",
        min_value=0.0,
        step=0.1,
        format="%.3f",
    )
with right:
    count = st.slider("Tokens per chart", min_value=5, max_value=50, value=20, key="tokens.count")

try:
    distributions = cached_distributions(
        context.options_json,
        context.stamp,
        spec,
        settings.template,
        int(settings.max_length),
        float(settings.alpha),
    )
except Exception as error:  # a bad option must show as a message, not a traceback
    show_error(error)
    st.stop()
tokenizer = loaded.tokenizer

st.subheader("Q+ and Q−: the most frequent tokens")
left, right = st.columns(2)
left.plotly_chart(
    charts.token_bars(
        distributions.top_tokens(tokenizer, "q_plus", count), "Q+ (chosen)", charts.CHOSEN_COLOR, "Q+"
    ),
    width="stretch",
)
right.plotly_chart(
    charts.token_bars(
        distributions.top_tokens(tokenizer, "q_minus", count), "Q− (rejected)", charts.REJECTED_COLOR, "Q−"
    ),
    width="stretch",
)

st.subheader("Q_diff: tokens that tell chosen from rejected")
left, right = st.columns(2)
left.plotly_chart(
    charts.token_bars(
        distributions.top_tokens(tokenizer, "q_diff", count),
        "Highest Q_diff (more frequent in chosen)",
        charts.CHOSEN_COLOR,
        "Q_diff",
    ),
    width="stretch",
)
right.plotly_chart(
    charts.token_bars(
        distributions.top_tokens(tokenizer, "q_diff", count, lowest=True),
        "Lowest Q_diff (more frequent in rejected)",
        charts.REJECTED_COLOR,
        "Q_diff",
    ),
    width="stretch",
)

st.subheader("Token search")
query = st.text_input("Find tokens containing", key="tokens.query", placeholder="e.g. sorry")
if query:
    found = search_tokens(distributions, tokenizer, query)
    st.markdown(
        f"Tokens seen in the data that match: **{len(found)}**, sorted by |Q_diff| (at most 200 shown)."
    )
    st.dataframe(found, hide_index=True, width="stretch")
