"""Rewards and threshold page: background scoring, reward and score histograms, the selection."""

import math

import streamlit as st

from deft_core import charts
from deft_core.dashboard_context import ScoreContext, page_header, require_score_context
from deft_core.dashboard_state import bound, current, selection, threshold_value, update
from deft_core.explore import correlation, keep_summary, response_length, skew_warnings
from deft_core.filtering import select
from deft_core.jobs import cancel_job, job_status, start_job
from deft_core.text import count_noun

METHOD_LABELS = {
    "top": "Top k% by score",
    "bottom": "Bottom k% by score",
    "threshold": "Score ≥ threshold",
    "random": "Random k% (baseline)",
}

page_header(
    "Rewards and threshold",
    "Each response gets the distribution reward $r$: the mean over its $T$ tokens of $Q_{\\mathrm{diff}}$ "
    "weighted by the model's next-token distribution at that step (logprob or prob form). A pair's score "
    "$s$ is the margin between its two rewards, or the reward of the chosen response alone. High scores "
    "mark pairs whose chosen response reads like the chosen side of the data as a whole.",
    [
        r"r(y) = \frac{1}{T}\sum_{t=1}^{T} \sum_{v} Q_{\mathrm{diff}}(v)\,\log \mathrm{softmax}(z_t)(v)"
        r"\quad\text{or}\quad \frac{1}{T}\sum_{t=1}^{T} Q_{\mathrm{diff}} \cdot \mathrm{softmax}(z_t)",
        r"s = r(y_w) - r(y_l) \ \ (\text{margin}) \qquad \text{or} \qquad s = r(y_w)\ \ (\text{chosen})",
    ],
)


def time_left(seconds: float | None) -> str:
    """Say how long the job should still take; before its first batch there is no estimate yet."""
    if seconds is None or not math.isfinite(seconds):
        return "time left: after the first batch"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"about {minutes} min {rest:02d} s left" if minutes else f"about {rest} s left"


@st.fragment(run_every=1.0)
def job_progress(key: str) -> None:
    """Redraw the progress bar every second; rerun the whole page once the job has stopped."""
    status = job_status(key)
    if status is None or not status.active:
        st.rerun()
    if status.state == "queued":
        st.progress(0.0, text="Waiting for another scoring job to finish…")
    else:
        st.progress(
            status.fraction,
            text=f"{status.stage}: {status.done:.0f} of {count_noun(status.total, 'pair')} · "
            f"{status.tokens_per_s:.0f} tokens/s · {time_left(status.eta_s)}",
        )
    st.caption("Scoring runs on the server: you may switch pages or reload; this bar picks the job up again.")
    if st.button("Cancel scoring", key="rewards.cancel"):
        cancel_job(key)
        st.toast("Cancelling after the current batch…")


def scoring_section(context: ScoreContext) -> None:
    """Show the running job, or the button that starts one; the page stops after this."""
    status = job_status(context.key)
    if status is not None and status.active:
        job_progress(context.key)
        st.stop()
    if status is not None and status.state == "failed":
        st.error(f"The last scoring run failed: {status.error}")
    elif status is not None and status.state in ("cancelled", "interrupted"):
        st.warning(
            f"The last scoring run was {status.state} after {status.done:.0f} "
            f"of {count_noun(status.total, 'pair')}."
        )
    pairs = count_noun(len(context.data.data.pairs), "pair")
    verb = "is" if len(context.data.data.pairs) == 1 else "are"
    st.info(
        f"{pairs} {verb} not scored yet with model {context.spec} and these options. "
        "Scoring runs in the background and its result is cached, so it is done once."
    )
    if st.button(f"Score {pairs}", type="primary", key="rewards.start"):
        description = f"{pairs} of {context.data.data.source.describe()} with {context.spec}"
        start_job(context.key, context.data.data, context.loaded, context.score_options, description)
        st.rerun()
    st.stop()


def selection_controls(scores) -> None:
    bound(
        st.radio,
        "method",
        "Keep",
        key="rewards.method",
        options=list(METHOD_LABELS),
        format_func=METHOD_LABELS.get,
        horizontal=True,
    )
    method = current().method
    if method == "threshold":
        low, high = float(scores.min()), float(scores.max())
        # A stored threshold from other scores may lie outside this range, which st.slider rejects.
        clamped = min(max(threshold_value(current(), scores), low), high)
        if current().threshold != clamped:
            update(threshold=clamped)
        bound(
            st.slider,
            "threshold",
            "Threshold on the pair score s",
            key="rewards.threshold",
            min_value=low,
            max_value=max(high, low + 1e-9),
            step=max((high - low) / 500, 1e-9),
            format="%.4g",
        )
    else:
        bound(
            st.slider,
            "percent",
            "k (% of pairs)",
            key="rewards.percent",
            min_value=0.5,
            max_value=100.0,
            step=0.5,
        )
    if method == "random":
        bound(st.number_input, "seed", "Random seed", key="rewards.seed", min_value=0, step=1)


context = require_score_context()
if not context.has_scores:
    scoring_section(context)
table, meta = context.scores()
timing = meta.get("timing", {})
st.success(
    f"Scores of {count_noun(len(table), 'pair')} "
    f"(computed at {meta.get('created_at', '?')} in {timing.get('seconds', '?')} s "
    f"with {meta['model']['spec']}, {meta['options']['reward_form']} form, "
    f"{meta['options']['pair_score']} score)."
)

selection_controls(table["score"])
chosen = selection(current(), table["score"])
keep = select(table["score"].to_numpy(), chosen)
summary = keep_summary(table, keep)
columns = st.columns(4)
columns[0].metric("Kept", summary.kept)
columns[1].metric("Dropped", summary.dropped)
columns[2].metric("Kept share", f"{summary.kept_percent:.1f}%")
columns[3].metric("Median score kept", f"{summary.median_score_kept:.4g}")
st.caption(
    f"Selection: {chosen.describe()}. Pairs without a finite score are never kept ({summary.unscored})."
)

kept_scores = table["score"][keep]
cut = {
    "threshold": chosen.value,
    "top": float(kept_scores.min()) if len(kept_scores) else None,
    "bottom": float(kept_scores.max()) if len(kept_scores) else None,
}.get(chosen.method)
left, right = st.columns(2)
left.plotly_chart(charts.reward_histogram(table), width="stretch")
right.plotly_chart(charts.score_histogram(table, keep, cut), width="stretch")

st.subheader("Score and response length")
lengths = response_length(table).to_numpy()
pearson, spearman = correlation(lengths, table["score"].to_numpy())
st.plotly_chart(charts.score_length_scatter(table, keep, lengths), width="stretch")
st.markdown(
    f"Correlation of the pair score with the mean response length: Pearson r = **{pearson:.3f}**, "
    f"Spearman ρ = **{spearman:.3f}**. A strong correlation means the score partly measures length."
)
for warning in skew_warnings(table, keep):
    st.warning(warning)

with st.expander("Scoring metadata"):
    st.json({k: v for k, v in meta.items() if k not in ("distributions", "identity")}, expanded=False)
