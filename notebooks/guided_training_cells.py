"""Cells of notebook 2, guided training; notebooks/build_notebooks.py writes the .ipynb from them."""

GUIDED_TRAINING = [
    ("markdown", """# 2. Guided LoRA training with the DEFT reward

Notebook 1 scored every pair and kept the top few percent. This notebook trains on that subset
with DPO, adds DEFT's guidance term, and watches the curves while the run trains:

1. score the data and pick the training subset;
2. look at the loss: DPO plus the distribution reward of the policy being trained;
3. start a LoRA run in the background and plot its metrics live;
4. train the same subset without guidance and compare the two runs.

Everything runs offline on a CPU with the bundled SmolLM2-135M-Instruct and the bundled sample.
The settings are tiny so that the notebook finishes in minutes. They show the mechanics, not a result."""),
    ("code", """import os
import time
from pathlib import Path

import pandas as pd
import plotly.express as px
import torch
from IPython.display import display

# The tests shrink these. DEFT_NB_DATA can point to an HH-RLHF .jsonl.gz for real data.
DATA = os.environ.get("DEFT_NB_DATA", "sample")
LIMIT = int(os.environ.get("DEFT_NB_LIMIT", "120"))
STEPS = int(os.environ.get("DEFT_NB_STEPS", "8"))
MAX_LENGTH = int(os.environ.get("DEFT_NB_MAX_LENGTH", "256"))
TOP_PERCENT = 25  # of the non-held-out pairs; large because the sample is small
WORK = Path(os.environ.get("DEFT_NB_WORK", "notebook-outputs")).resolve()
WORK.mkdir(parents=True, exist_ok=True)"""),
    ("markdown", """## 1. Scores and the training subset

Training reads the pair scores from a score file, the same Parquet file `deft score` writes. The
held-out pairs are drawn at random (with the seed) from the whole dataset *before* any selection,
so that no pair chosen for its score is ever evaluated. The top `TOP_PERCENT` of the rest
become the training pairs."""),
    ("code", """from deft_core.loading import DataOptions, load_pairs
from deft_core.models import load_model
from deft_core.scoring import ScoreOptions, score_data
from deft_core.store import save_scores

data = load_pairs(DataOptions(DATA, limit=LIMIT))
loaded = load_model("bundled")
scores = score_data(data, loaded, ScoreOptions(max_length=MAX_LENGTH))
score_file = WORK / "scores.parquet"
save_scores(score_file, scores.table, scores.meta)
print(f"{len(scores.table)} pairs scored; score file: {score_file}")"""),
    ("markdown", """## 2. The guided loss

For a pair $(x, y_w, y_l)$ and the policy $\\pi_\\theta$ (the base model plus a LoRA adapter), DPO
compares the policy with the frozen reference $\\pi_{ref}$ (the same model with the adapter off):

$$L_{DPO} = -\\log \\sigma\\Big(\\beta \\big[\\log \\tfrac{\\pi_\\theta(y_w|x)}{\\pi_{ref}(y_w|x)}
- \\log \\tfrac{\\pi_\\theta(y_l|x)}{\\pi_{ref}(y_l|x)}\\big]\\Big)$$

DEFT adds the distribution reward of the *policy*, $s_\\theta = r_\\theta(x, y_w) - r_\\theta(x, y_l)$,
with $r_\\theta(x, y) = \\frac{1}{T}\\sum_t Q_{diff} \\cdot \\log \\pi_\\theta(\\cdot | x, y_{<t})$:

$$L = L_{DPO} - \\omega \\, s_\\theta$$

so the gradient also pushes the policy's next-token distributions towards the tokens typical of
chosen responses. Both terms are pure functions of per-sequence numbers. Here they are computed on a
batch of two made-up pairs."""),
    ("code", """from deft_core.training.losses import LossParams, PairBatchOutputs, deft_loss

outputs = PairBatchOutputs(
    chosen_logps=torch.tensor([-40.0, -55.0]),      # log pi_theta(y_w | x), summed over tokens
    rejected_logps=torch.tensor([-42.0, -50.0]),
    chosen_tokens=torch.tensor([12.0, 20.0]),
    rejected_tokens=torch.tensor([14.0, 18.0]),
    chosen_reward=torch.tensor([-9.80, -9.95]),     # r_theta(x, y_w): mean of Q_diff . log p
    rejected_reward=torch.tensor([-9.90, -9.90]),
    ref_chosen_logps=torch.tensor([-41.0, -55.0]),  # the same with the adapter off
    ref_rejected_logps=torch.tensor([-41.5, -50.5]),
)
for omega in (0.0, 4.0):
    parts = deft_loss("dpo", outputs, LossParams(beta=0.1, omega=omega, pair_score="margin"))
    print(f"omega={omega}: loss={parts.total.item():.4f} "
          f"(DPO {parts.base.item():.4f}, guidance part {parts.guidance.item():.4f})")"""),
    ("markdown", """## 3. Train in the background and watch it live

A `TrainConfig` contains every setting, with validation that lists all problems at once. A run is a
folder (config, metrics, checkpoints, adapter). `launch` starts `deft train --resume RUN` as a
separate process, exactly as the dashboard's Train page does, so the notebook stays free to plot
`metrics.jsonl` while it grows. `run.request_cancel()` would stop it at the next step with a
checkpoint, and launching it again resumes from there."""),
    ("code", """from deft_core.training.config import TrainConfig
from deft_core.training.runs import create_run, launch

def make_config(omega, name):
    return TrainConfig(
        data=DATA, limit=LIMIT, scores=str(score_file), eval_size=8,
        selection="top", selection_value=TOP_PERCENT, model="bundled", max_length=MAX_LENGTH,
        method="dpo", omega=omega, batch_size=2, grad_accum=1, max_steps=STEPS,
        eval_steps=max(1, STEPS // 2), save_steps=max(1, STEPS // 2), name=name,
    )

def watch(run, every=2.0):
    \"\"\"Redraw the training curves until the run stops; return its metrics as a table.\"\"\"
    handle = display("starting...", display_id=True)
    while True:
        state = run.status()["state"]
        records = [r for r in run.metrics() if "train/loss" in r]
        if records:
            frame = pd.DataFrame(records)
            figure = px.line(frame, x="step", y=["train/base_loss", "train/guidance", "train/loss"],
                             title=f"{run.run_id}: {state}, step {frame['step'].max()} of {STEPS}")
            handle.update(figure)
        if state not in ("pending", "running"):
            return pd.DataFrame(run.metrics())
        time.sleep(every)

guided = create_run(make_config(None, "notebook-guided"))  # omega None: the measured default for DPO
launch(guided)
guided_metrics = watch(guided)
print(guided.status()["state"], "in", guided.summary()["wall_seconds"], "s")"""),
    ("markdown", """The curves: `train/base_loss` is the DPO loss, `train/guidance` is the added term
$-\\omega \\, s_\\theta$, and `train/loss` their sum. With so few steps the lines
mostly show noise; on real data with more steps the guidance term falls (its $s_\\theta$ rises) as the
policy's distributions move towards chosen-style tokens."""),
    ("markdown", """## 4. The same subset without guidance

$\\omega = 0$ trains plain DPO on exactly the same pairs, order and seed. Comparing the two runs'
held-out metrics separates the effect of the guidance term from the effect of the data selection.
`eval/preference_accuracy` is the share of held-out pairs whose chosen response gets the higher
implicit DPO reward; `eval/pair_score` is the held-out $s_\\theta$."""),
    ("code", """plain = create_run(make_config(0.0, "notebook-plain"))
launch(plain)
plain_metrics = watch(plain)

def evaluations(metrics, label):
    rows = metrics[metrics["eval/loss"].notna()] if "eval/loss" in metrics else metrics.iloc[0:0]
    return rows.assign(run=label)[["run", "step", "eval/rewards/accuracies", "eval/rewards/margins", "eval/pair_score"]]

comparison = pd.concat([evaluations(guided_metrics, "DEFT-DPO"), evaluations(plain_metrics, "DPO")])
display(comparison)
px.line(comparison, x="step", y="eval/pair_score", color="run", markers=True,
        title="Held-out pair score s_theta during training")"""),
    ("markdown", """Each run folder holds `config.yaml` (the resolved settings), `metrics.jsonl`, `summary.json`
and the LoRA adapter in `adapter/`, which `peft.PeftModel.from_pretrained` loads over the base
model. The same runs start from the command line with `deft train --config configs/sample-dpo.yaml`,
and notebook 3 compares the tuned models with the base model and runs the full ablation."""),
]
