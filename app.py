"""The deft dashboard: explore preference data, its token distributions and DEFT scores, pick a subset.

Start it with `streamlit run app.py`; .streamlit/config.toml binds it to 127.0.0.1.
"""

import logging

import streamlit as st

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# Pages in navigation order: adding a page (Train, Compare, Ablation) is one line here.
PAGES = [
    st.Page("pages/data.py", title="Data", icon=":material/table:", default=True),
    st.Page("pages/tokens.py", title="Token distributions", icon=":material/bar_chart:"),
    st.Page("pages/rewards.py", title="Rewards and threshold", icon=":material/tune:"),
    st.Page("pages/inspect_pairs.py", title="Inspect pairs", icon=":material/search:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/ablation.py", title="Ablation", icon=":material/science:"),
]

# Streamlit 1.67 draws ":material/NAME:" icons in the sidebar from its bundled font, but it turns
# the page icon into a favicon fetched from fonts.gstatic.com unless set_page_config sets one.
# An emoji favicon is a data: URL, so the dashboard makes no request beyond its own server.
st.set_page_config(page_title="deft", page_icon="🧪", layout="wide")
# Each page draws the shared sidebar through page_header(). Drawing it here instead would be
# simpler, but streamlit 1.67's AppTest reruns a page of a pages/ folder without this entry
# point, so the sidebar would vanish from the tests after the first run.
st.navigation(PAGES).run()
