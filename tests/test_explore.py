"""Pure dashboard helpers: escaping of token HTML, kept/dropped statistics, search, correlation, charts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deft_core import charts
from deft_core.explore import (
    contribution_color,
    contribution_scale,
    correlation,
    keep_summary,
    legend_html,
    search_frame,
    search_tokens,
    skew_warnings,
    text_html,
    token_html,
)
from deft_core.filtering import Selection, select


def score_table(scores, chosen_tokens, rejected_tokens=None, flags=None) -> pd.DataFrame:
    count = len(scores)
    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(count)],
            "score": np.asarray(scores, dtype=float),
            "chosen_tokens": np.asarray(chosen_tokens),
            "rejected_tokens": np.asarray(rejected_tokens if rejected_tokens is not None else chosen_tokens),
            "reward_chosen": np.zeros(count),
            "reward_rejected": np.zeros(count),
            "flags": flags or [""] * count,
        }
    )


def test_token_html_escapes_markup():
    pieces = ["<script>", "alert(1)", "</script>", " <b>", "bold", "</b>", ' "x" & y']
    rendered = token_html(pieces, np.linspace(-1, 1, len(pieces)), 1.0)
    assert "<script" not in rendered
    assert "<b>" not in rendered
    assert "&lt;script&gt;" in rendered
    assert "&lt;b&gt;" in rendered
    assert "&quot;x&quot; &amp; y" in rendered
    assert rendered.count('<span class="deft-token"') == len(pieces)


def test_token_html_keeps_line_breaks_after_escaping():
    rendered = token_html(["a\n<i>"], np.array([0.5]), 1.0)
    assert "↵<br>&lt;i&gt;" in rendered


def test_token_html_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 token texts but 1"):
        token_html(["a", "b"], np.array([0.1]), 1.0)


def test_text_html_escapes():
    rendered = text_html("Human: <script>alert(1)</script>\n<b>hi</b>")
    assert "<script" not in rendered
    assert "<b>" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered


def test_contribution_color_sign_and_strength():
    assert contribution_color(1.0, 1.0) == "rgba(31,119,180,0.85)"
    assert contribution_color(-2.0, 1.0) == "rgba(255,127,14,0.85)"
    assert contribution_color(0.0, 1.0).endswith(",0.0)")
    assert contribution_color(math.nan, 1.0) == "rgba(255,255,255,0)"


def test_legend_and_scale():
    assert "orange lowers" in legend_html(0.5)
    values = np.concatenate([np.full(99, 0.01), [100.0]])
    assert contribution_scale(values) < 5  # one outlier does not set the scale
    assert contribution_scale(np.zeros(3)) == 1.0


def test_keep_summary_counts():
    table = score_table([3.0, 1.0, np.nan, 2.0], [10, 20, 30, 40])
    keep = select(table["score"].to_numpy(), Selection("threshold", 2.0))
    summary = keep_summary(table, keep)
    assert (summary.total, summary.kept, summary.dropped, summary.unscored) == (4, 2, 2, 1)
    assert summary.median_score_kept == 2.5
    assert summary.median_length_kept == 25.0
    assert summary.kept_percent == 50.0


def test_correlation_of_linear_data():
    x = np.arange(10.0)
    pearson, spearman = correlation(x, 2 * x + 1)
    assert pearson == pytest.approx(1.0)
    assert spearman == pytest.approx(1.0)
    assert all(math.isnan(v) for v in correlation(x, np.ones(10)))


def test_skew_warning_for_short_kept_pairs():
    lengths = [10] * 20 + [100] * 80
    scores = [5.0] * 20 + [0.0] * 80
    table = score_table(scores, lengths)
    keep = select(table["score"].to_numpy(), Selection("top", 20))
    warnings = skew_warnings(table, keep)
    assert any("much shorter responses" in w for w in warnings)


def test_skew_warning_absent_for_unbiased_selection():
    rng = np.random.default_rng(0)
    table = score_table(rng.normal(size=200), rng.integers(50, 60, size=200))
    keep = select(table["score"].to_numpy(), Selection("top", 50))
    assert skew_warnings(table, keep) == []


def test_skew_warning_for_flagged_pairs():
    flags = ["duplicate"] * 10 + [""] * 90
    table = score_table([1.0] * 10 + [0.0] * 90, [50] * 100, flags=flags)
    keep = select(table["score"].to_numpy(), Selection("top", 10))
    assert any("carry a load flag" in w for w in skew_warnings(table, keep))


def test_search_frame_ignores_case_and_regex():
    frame = pd.DataFrame({"pair_id": ["a", "b"], "prompt": ["Hello (World)", "other"]})
    assert search_frame(frame, "hello (w")["pair_id"].tolist() == ["a"]
    assert len(search_frame(frame, "  ")) == 2


def test_search_tokens_finds_counted_tokens(bundled):
    from deft_core.distributions import TokenDistributions

    tokenizer = bundled.tokenizer
    chosen = [tokenizer(" sorry thanks", add_special_tokens=False)["input_ids"]]
    rejected = [tokenizer(" no", add_special_tokens=False)["input_ids"]]
    vocab = bundled.model.get_output_embeddings().weight.shape[0]
    distributions = TokenDistributions.from_sequences(chosen, rejected, tokenizer, vocab)
    found = search_tokens(distributions, tokenizer, "SORR")
    assert found["token"].tolist() == ["·sorry"]
    assert found["Q_diff"].iloc[0] > 0


def test_charts_escape_token_labels():
    rows = [{"id": 1, "token": "<b>", "value": 0.1, "chosen_count": 2, "rejected_count": 1}]
    figure = charts.token_bars(rows, "title", charts.CHOSEN_COLOR, "Q")
    assert figure.data[0].y[0].startswith("&lt;b&gt;")


def test_score_histogram_splits_kept_and_dropped():
    table = score_table([0.0, 1.0, 2.0, 3.0], [1, 1, 1, 1])
    keep = np.array([False, False, True, True])
    figure = charts.score_histogram(table, keep, 2.0)
    assert [trace.name for trace in figure.data] == ["kept (2)", "dropped (2)"]
