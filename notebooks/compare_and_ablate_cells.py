"""Cells of notebook 3, compare and ablate; notebooks/build_notebooks.py writes the .ipynb from them."""

COMPARE_AND_ABLATE = [
    ("markdown", """# 3. Did it help? Compare models and run the DEFT ablation

Notebook 2 trained LoRA adapters. This notebook checks whether training helped, and whether DEFT's
two ideas are what helped:

1. train one DEFT-DPO adapter and compare it with the base model on held-out prompts:
   generations side by side with a word diff, and one metric table;
2. run the ablation: DEFT's top k% against a random k% and the full set, each trained with and
   without the guidance term, on the same held-out split, seed and step budget.

It uses the bundled model and sample with tiny settings, so the numbers here show how the
pieces fit together, not whether DEFT works. `docs/results.md` records a run on real HH-RLHF data."""),
    ("code", """import os
from pathlib import Path

import pandas as pd
import plotly.express as px
from IPython.display import HTML, display

# The tests shrink these. DEFT_NB_DATA can point to an HH-RLHF .jsonl.gz for real data.
DATA = os.environ.get("DEFT_NB_DATA", "sample")
LIMIT = int(os.environ.get("DEFT_NB_LIMIT", "120"))
STEPS = int(os.environ.get("DEFT_NB_STEPS", "8"))
MAX_LENGTH = int(os.environ.get("DEFT_NB_MAX_LENGTH", "256"))
PROMPTS = int(os.environ.get("DEFT_NB_PROMPTS", "8"))  # held-out prompts that get generations
NEW_TOKENS = int(os.environ.get("DEFT_NB_NEW_TOKENS", "48"))
TOP_PERCENT = 25  # of the non-held-out pairs; large because the sample is small
WORK = Path(os.environ.get("DEFT_NB_WORK", "notebook-outputs")).resolve()
WORK.mkdir(parents=True, exist_ok=True)"""),
    ("markdown", """## 1. Score, then train one guided adapter

The same two steps as notebooks 1 and 2, in one cell. `execute` trains in this process and
writes the run folder. The dashboard and `deft train` do the same in a separate process."""),
    ("code", """from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data
from deft_core.store import save_scores
from deft_core.training.command import execute
from deft_core.training.config import TrainConfig
from deft_core.training.runs import create_run

data = load_pairs(DataOptions(DATA, limit=LIMIT))
scores = score_data(data, load_model("bundled"), ScoreOptions(max_length=MAX_LENGTH))
score_file = WORK / "scores.parquet"
save_scores(score_file, scores.table, scores.meta)

config = TrainConfig(
    data=DATA, limit=LIMIT, scores=str(score_file), eval_size=8, selection="top",
    selection_value=TOP_PERCENT, max_length=MAX_LENGTH, method="dpo", batch_size=2, grad_accum=1,
    max_steps=STEPS, eval_steps=STEPS, save_steps=STEPS, name="notebook-compare",
)
run = create_run(config)
execute(run, config)
print(run.run_id, run.status()["state"])"""),
    ("markdown", """## 2. Compare the adapter with the base model

`compare_models` rebuilds the run's held-out split (seeded, so it is the split training held
out), generates an answer to each held-out prompt with every model (the prompt rendered with the
chat template training used; greedy here), and computes per model:

- **preference_accuracy**: the share of held-out pairs where the chosen response scores higher:
  the implicit DPO reward $\\beta \\log \\frac{\\pi_\\theta(y|x)}{\\pi_{ref}(y|x)}$ for an adapter,
  the mean token log-probability for the base model (whose implicit reward is always 0);
- **logprob_accuracy**: the same with the mean token log-probability for every model, so that
  base and adapters are compared on one definition;
- **reward_mean**: the mean distribution reward $r(x, \\hat y)$ of the generated answers, scored
  with the dataset's $Q_{diff}$ by the base model, so that every model's outputs share one scale;
- **bleu**: corpus BLEU (sacrebleu) of the generations against the chosen responses;
- **perplexity**: $\\exp$ of the mean token negative log-likelihood of the held-out chosen
  responses, a check that tuning did not cost general fluency.

`docs/compare.md` defines each one precisely."""),
    ("code", """from deft_core.compare import CompareRequest, GenerationSettings, compare_models, save_comparison
from deft_core.compare.report import diff_html, metrics_table, write_report

request = CompareRequest(
    runs=[run.run_id], limit=PROMPTS, settings=GenerationSettings(max_new_tokens=NEW_TOKENS)
)
comparison = compare_models(request)
folder = save_comparison(comparison)
write_report(comparison, WORK / "comparison.html")
print("saved in", folder)
metrics_table(comparison)"""),
    ("markdown", """The outputs for the first held-out prompt, with a word-level diff from the base model's answer
to the adapter's (deleted words struck through, inserted words highlighted):"""),
    ("code", """base, tuned = comparison.evaluations[0], comparison.evaluations[1]
first = base.outputs[0]
print("prompt:", first["prompt"][-300:])
display(HTML(diff_html(base.outputs[0]["output"], tuned.outputs[0]["output"])))
pd.DataFrame([
    {"model": e.label, "reward": e.outputs[0]["reward"], "tokens": e.outputs[0]["length"], "bleu": e.outputs[0].get("bleu")}
    for e in comparison.evaluations
])"""),
    ("markdown", """## 3. The ablation

DEFT makes two claims that one training run cannot separate: that the top-scoring subset is
better data than a random subset of the same size, and that the guidance term helps on top of the
base loss. The ablation trains six variants with one seed, one step budget and one held-out split:

| | guidance on ($\\omega > 0$) | guidance off ($\\omega = 0$) |
| --- | --- | --- |
| top k% by DEFT score | DEFT as published | selection only |
| random k% | guidance only | less data |
| all pairs | guidance on all data | plain DPO |

Every variant and the base model are then evaluated as above. `run_ablation` does it in this
process, while `deft ablate` and the dashboard's Ablation page run the same code in the background,
and a cancelled ablation resumes by skipping the variants already done."""),
    ("code", """from deft_core.ablation.config import AblationConfig
from deft_core.ablation.folder import create_ablation
from deft_core.ablation.results import results_frame
from deft_core.ablation.runner import run_ablation

ablation_config = AblationConfig(
    data=DATA, scores=str(score_file), k_percent=TOP_PERCENT, eval_size=8, max_steps=STEPS,
    batch_size=2, grad_accum=1, max_length=MAX_LENGTH, eval_limit=PROMPTS,
    max_new_tokens=NEW_TOKENS, train_settings={"limit": LIMIT}, name="notebook",
)
ablation = create_ablation(ablation_config)
results = run_ablation(ablation)
table = results_frame(results["rows"])
table[["variant", "train_pairs", "preference_accuracy", "logprob_accuracy", "reward_mean", "bleu",
       "perplexity", "train_seconds"]]"""),
    ("code", """long = table.melt(id_vars="variant", value_vars=["preference_accuracy", "logprob_accuracy"],
                  var_name="metric", value_name="value")
px.bar(long, x="variant", y="value", color="metric", barmode="group",
       title=f"Held-out accuracy per variant ({results['held_out_pairs']} pairs)")"""),
    ("markdown", """How to read it: with $n$ held-out pairs, one pair moves an accuracy by $1/n$, and the standard
error of an accuracy near 0.5 is about $0.5/\\sqrt{n}$ (0.18 for the 8 pairs here, 0.06 for 64).
Differences smaller than that are noise. On real data, DEFT's claim holds if "top k%, guided"
matches or beats "all pairs" while training on a fraction of them, and beats "random k%".
The ablation folder also contains `results.csv` and `plots.html`; `docs/results.md` has a real run."""),
]
