"""Write the teaching notebooks from the cell lists below, so that their source stays reviewable.

Run `python notebooks/build_notebooks.py` after editing a cell; the tests execute the .ipynb files.
Settings that the tests shrink are read from environment variables with DEFT_NB_ prefixes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_and_ablate_cells import COMPARE_AND_ABLATE  # noqa: E402
from guided_training_cells import GUIDED_TRAINING  # noqa: E402

SCORE_AND_FILTER = [
    ("markdown", """# 1. Score and filter preference data with the DEFT distribution reward

DEFT (Zhu et al., arXiv 2604.01787) keeps a small subset of a preference dataset: the pairs whose
responses best separate "chosen-style" from "rejected-style" text, as judged by a model's
next-token distributions. This notebook walks through each step with `deft_core`:

1. load a preference dataset and read its audit;
2. count tokens in chosen and rejected responses and build the discrepancy distribution `Q_diff`;
3. score every pair with the distribution reward;
4. keep the top 5% and compare it with a random 5%.

It uses the bundled model (SmolLM2-135M-Instruct) and the bundled sample, so it runs offline on a CPU."""),
    ("code", """import os

import numpy as np
import pandas as pd
import plotly.express as px

from deft_core.loading import DataOptions, load_pairs

# The tests shrink these; set DEFT_NB_DATA to a .jsonl.gz of HH-RLHF to use real data.
DATA = os.environ.get("DEFT_NB_DATA", "sample")
LIMIT = int(os.environ.get("DEFT_NB_LIMIT", "120"))"""),
    ("markdown", """## 1. Load the data and read the audit

Every input layout (HH-RLHF dialogues, prompt/chosen/rejected columns, chat message lists) becomes
the same `PreferencePair` record: the prompt as chat messages, and the final chosen and rejected
responses. The audit counts what was read, what was skipped and why, with line numbers."""),
    ("code", """data = load_pairs(DataOptions(DATA, limit=LIMIT))
print("\\n".join(data.audit.summary_lines()))
pair = data.pairs[0]
print("\\nprompt:", pair.prompt)
print("chosen:", pair.chosen[:200])
print("rejected:", pair.rejected[:200])"""),
    ("markdown", """## 2. Token distributions and Q_diff

With the model's tokenizer we count each token id over all chosen responses, $c^+(v)$, and over
all rejected responses, $c^-(v)$, leaving out special tokens. Normalising gives two distributions,
and their difference is the signal DEFT looks for:

$$Q^+(v) = \\frac{c^+(v) + \\alpha}{\\sum_u c^+(u) + \\alpha}, \\quad
Q^-(v) = \\frac{c^-(v) + \\alpha}{\\sum_u c^-(u) + \\alpha}, \\quad
Q_{diff}(v) = Q^+(v) - Q^-(v)$$

$Q_{diff}$ sums to zero: positive entries are tokens typical of preferred answers."""),
    ("code", """from deft_core.distributions import TokenDistributions
from deft_core.encoding import PairEncoder
from deft_core.models import load_model

loaded = load_model("bundled")  # bf16 where the CPU supports it
encoder = PairEncoder(loaded.tokenizer, template="auto", max_length=1024)
encoded = encoder.encode_many(data.pairs)
vocab_size = loaded.model.get_output_embeddings().weight.shape[0]
distributions = TokenDistributions.from_encoded(encoded, loaded.tokenizer, vocab_size)
print("sum of Q_diff:", distributions.q_diff.sum())
top = pd.DataFrame(distributions.top_tokens(loaded.tokenizer, "q_diff", n=12))
bottom = pd.DataFrame(distributions.top_tokens(loaded.tokenizer, "q_diff", n=12, lowest=True))
px.bar(pd.concat([top, bottom]), x="token", y="value", title="Tokens that most separate chosen from rejected")"""),
    ("markdown", """## 3. The distribution reward

For a response of $T$ tokens, with the model's logits $z_t$ predicting token $t$ (teacher forcing),

$$r(x, y) = \\frac{1}{T} \\sum_t \\sum_v Q_{diff}(v) \\log \\mathrm{softmax}(z_t)(v)$$

which, because $\\sum_v Q_{diff}(v) = 0$, equals $\\frac{1}{T} \\sum_t Q_{diff} \\cdot z_t$: the model
scores high when it expects chosen-style tokens. The pair score is the margin
$s = r(x, y_w) - r(x, y_l)$. `score_data` computes both rewards for every pair, batched by length,
and caches the result."""),
    ("code", """from deft_core.scoring import ScoreOptions, score_data

result = score_data(data, loaded, ScoreOptions(reward_form="logprob", pair_score="margin"))
table = result.table
print(f"scored {len(table)} pairs in {result.meta['timing']['seconds']} s (cached: {result.from_cache})")
table[["pair_id", "reward_chosen", "reward_rejected", "score"]].describe()"""),
    ("code", """long = table.melt(value_vars=["reward_chosen", "reward_rejected"], var_name="response", value_name="reward")
px.histogram(long, x="reward", color="response", barmode="overlay", nbins=40,
             title="Distribution reward of chosen and rejected responses")"""),
    ("markdown", """## 4. Keep the top 5%, and a random 5% for comparison

The random subset has the same size. Training on both separates the effect of the score from
the effect of simply using less data."""),
    ("code", """from deft_core.filtering import Selection, select

top_mask = select(table["score"].to_numpy(), Selection("top", 5))
random_mask = select(table["score"].to_numpy(), Selection("random", 5, seed=0))
summary = pd.DataFrame({
    "subset": ["all", "top 5%", "random 5%"],
    "pairs": [len(table), top_mask.sum(), random_mask.sum()],
    "mean score": [table["score"].mean(), table.loc[top_mask, "score"].mean(), table.loc[random_mask, "score"].mean()],
    "mean chosen tokens": [table["chosen_tokens"].mean(), table.loc[top_mask, "chosen_tokens"].mean(),
                           table.loc[random_mask, "chosen_tokens"].mean()],
})
summary"""),
    ("code", """best = table.loc[top_mask].sort_values("score", ascending=False).iloc[0]
pair = next(p for p in data.pairs if p.id == best["pair_id"])
print("score:", round(best["score"], 4))
print("prompt:", pair.prompt[-1]["content"][:300])
print("chosen:", pair.chosen[:300])
print("rejected:", pair.rejected[:300])"""),
    ("markdown", """The same steps run from the command line: `deft score DATA --out scores.parquet`, then
`deft filter scores.parquet --top 5 --out kept.jsonl`. The dashboard (`make app`) shows the
same plots and lets you move the threshold by hand."""),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for index, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        # Fixed cell ids keep a rebuild's diff down to the cells that changed.
        notebook.cells.append(make(source, id=f"cell-{index:02d}"))
    nbformat.write(notebook, path)


if __name__ == "__main__":
    build(SCORE_AND_FILTER, HERE / "01_score_and_filter.ipynb")
    build(GUIDED_TRAINING, HERE / "02_guided_training.ipynb")
    build(COMPARE_AND_ABLATE, HERE / "03_compare_and_ablate.ipynb")
