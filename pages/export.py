"""Export page: download the kept or dropped pairs in the input's format, or save them for training."""

import json

import streamlit as st

from deft_core.dashboard_context import page_header, require_scores
from deft_core.dashboard_state import current, selection, show_error
from deft_core.filtering import select
from deft_core.subsets import default_name, export_bytes, export_format, save_to_workspace, workspace_subsets

page_header(
    "Export",
    "Write the pairs of the current selection back in the input's own format, as the original "
    "records, so any trainer that read the input reads the subset. An ids file records the "
    "selection, the kept and dropped pair ids and the source; the score file carries every score "
    "with the model, the options and the token distributions.",
    [r"\mathcal{D}_{\mathrm{kept}} = \{(x, y_w, y_l) \in \mathcal{D} : \mathrm{keep}(s)\}"],
)

context, table, meta = require_scores()
chosen_selection = selection(current(), table["score"])
keep = select(table["score"].to_numpy(), chosen_selection)
extension = export_format(meta)
columns = st.columns(3)
columns[0].metric("Kept", int(keep.sum()))
columns[1].metric("Dropped", int((~keep).sum()))
columns[2].metric("Format", extension)
st.caption(f"Selection: {chosen_selection.describe()} (change it on the Rewards and threshold page).")


@st.cache_data(show_spinner="Preparing files…", max_entries=8)
def cached_export(key: str, selection_text: str, _table, _meta: dict, _selection) -> dict[str, bytes]:
    # Cached by score key and selection, which fix every byte of the export.
    return export_bytes(_table, _meta, _selection)


def files() -> dict[str, bytes]:
    return cached_export(context.key, repr(chosen_selection), table, meta, chosen_selection)


st.subheader("Download")
left, middle, right = st.columns(3)
left.download_button(
    f"Kept pairs (.{extension})",
    data=lambda: files()[f"kept.{extension}"],
    file_name=f"kept.{extension}",
    key="export.kept",
    type="primary",
)
middle.download_button(
    f"Dropped pairs (.{extension})",
    data=lambda: files()[f"kept.dropped.{extension}"],
    file_name=f"dropped.{extension}",
    key="export.dropped",
)
right.download_button(
    "Ids and scoring metadata (.json)",
    data=lambda: json.dumps(
        {
            **json.loads(files()["kept.ids.json"]),
            "scoring": {k: v for k, v in meta.items() if k != "distributions"},
        },
        indent=2,
        ensure_ascii=False,
    ),
    file_name="kept.ids.json",
    key="export.ids",
)

st.subheader("Save to the workspace")
st.markdown(f"Training runs read subsets from `{workspace_subsets()}`.")
if "export.name" not in st.session_state:
    st.session_state["export.name"] = default_name(meta, chosen_selection)
name = st.text_input("Subset name", key="export.name")
if st.button("Save subset", key="export.save"):
    try:
        summary = save_to_workspace(table, meta, chosen_selection, name.strip())
    except Exception as error:  # a write failure is shown, and the page stays usable
        show_error(error)
    else:
        st.success(
            f"Saved {summary['kept']} kept and {summary['dropped']} dropped pairs to {summary['folder']}"
        )
