"""Run an ablation: evaluate the base model, then train and evaluate each variant in turn.

Training goes through deft_core.training (`execute`, which runs `train_run` with the run's log
and status), and evaluation through deft_core.compare.evaluate_model. Finished rows are written
after each model, so a resumed ablation skips every variant whose row exists and continues an
unfinished run from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deft_core.ablation import results as tables
from deft_core.ablation.config import AblationConfig, Variant, variant_configs
from deft_core.ablation.folder import AblationDir
from deft_core.errors import DeftError
from deft_core.job_folders import now
from deft_core.pairs import PreferencePair
from deft_core.progress import Progress, ProgressCallback
from deft_core.training.config import TrainConfig
from deft_core.training.runs import RunDir, create_run

logger = logging.getLogger(__name__)

# Seconds between two progress.json writes within one phase; a new phase is always written.
PROGRESS_INTERVAL_S = 0.5
# Seconds between two looks at a training run's status and the ablation's cancel file.
WATCH_INTERVAL_S = 1.0


class AblationCancelled(Exception):
    """Raised to stop an ablation whose cancel was requested, between or inside its steps."""


@dataclass
class Reporter:
    """The ablation's progress sink: it writes progress.json and sends each update to a callback."""

    ablation: AblationDir
    callback: ProgressCallback | None = None
    started: float = field(default_factory=time.perf_counter)
    last_write: float = 0.0
    last_stage: str = ""

    def report(self, variant: str, phase: str, done: float, total: int, unit: str) -> None:
        stage = f"{variant}: {phase}"
        moment = time.perf_counter()
        if stage != self.last_stage or done >= total or moment - self.last_write >= PROGRESS_INTERVAL_S:
            self.ablation.write_progress(
                {"variant": variant, "phase": phase, "done": done, "total": total, "unit": unit}
            )
            self.last_write, self.last_stage = moment, stage
        if self.callback is not None:
            self.callback(Progress(stage, done, total, unit, elapsed_s=moment - self.started))


class RunWatcher:
    """While a variant trains: mirror the run's step into progress and pass a cancel on to the run."""

    def __init__(self, ablation: AblationDir, run: RunDir, reporter: Reporter, variant: str, steps: int):
        self.ablation, self.run, self.reporter = ablation, run, reporter
        self.variant, self.steps = variant, steps
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, name=f"ablation-watch-{variant}", daemon=True)

    def watch(self) -> None:
        while not self.stop.wait(WATCH_INTERVAL_S):
            if self.ablation.cancel_requested() and not self.run.cancel_requested():
                self.run.request_cancel()
            status = self.run.status()
            total = status.get("total_steps") or self.steps
            self.reporter.report(self.variant, "training", status.get("step", 0), total, "steps")

    def __enter__(self) -> RunWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class SharedEvaluation:
    """The held-out pairs and the Q_diff over the training pool on which every model is evaluated."""

    held_out: list[PreferencePair]
    q_diff: np.ndarray  # Shape: (V,)
    pool_pairs: int
    template: str  # the score file's, which every variant trains with: "chat" or "raw"


def score_file_options(path: str) -> tuple[str, float]:
    """Return the template and smoothing alpha that the score file was computed with."""
    from deft_core.store import load_scores

    _, meta = load_scores(path)
    return meta["options"]["template"], float(meta["options"]["alpha"])


def shared_evaluation(train: TrainConfig, alpha: float) -> SharedEvaluation:
    """Draw the held-out split as training does and compute Q_diff as training's guidance does.

    Every variant has the same data, seed and eval_size, so this split is the one each run holds
    out. Q_diff counts only the non-held-out pool, so the held-out text never shapes the reward.
    """
    from deft_core.encoding import PairEncoder
    from deft_core.models import load_tokenizer, model_vocab_size
    from deft_core.training.data import guidance_distributions, load_split

    split = load_split(train)
    encoder = PairEncoder(load_tokenizer(train.model), train.template, train.max_length)
    distributions = guidance_distributions(encoder, split.pool, model_vocab_size(train.model), alpha)
    return SharedEvaluation(split.eval, distributions.q_diff, len(split.pool), train.template)


def evaluate(
    ablation: AblationDir,
    config: AblationConfig,
    shared: SharedEvaluation,
    name: str,
    model_ref: str,
    reporter: Reporter,
) -> tuple[dict[str, float], float]:
    """Evaluate one model with evaluate_model, save its full output, and return (metrics, seconds)."""
    from deft_core.compare.evaluate import GenerationSettings, evaluate_model

    ablation.set_status("running", phase="evaluating", current_variant=name, current_run=None)
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens,
        do_sample=config.do_sample,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed,
        batch_size=config.generation_batch_size,
        template=shared.template,
    )

    def on_progress(progress: Progress) -> None:
        if ablation.cancel_requested():
            raise AblationCancelled
        # evaluate_model's stages read "<model label>: <step>"; the variant name replaces the label.
        step = progress.stage.rpartition(": ")[2]
        reporter.report(name, f"evaluating: {step}", progress.done, progress.total, progress.unit)

    reporter.report(name, "evaluating", 0, 1, "models")
    started = time.perf_counter()
    evaluation = evaluate_model(
        model_ref,
        shared.held_out,
        shared.q_diff,
        settings,
        base_model=config.model,
        device=config.device,
        dtype=config.dtype,
        beta=config.beta,
        max_length=config.max_length,
        limit=config.eval_limit,
        progress=on_progress,
    )
    seconds = time.perf_counter() - started
    text = json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False, default=str)
    ablation.write_text(f"evaluations/{name}.json", text)
    logger.info("evaluated %s in %.1f s: %s", name, seconds, evaluation.metrics)
    gc.collect()
    return evaluation.metrics, seconds


def train_variant(ablation: AblationDir, variant: Variant, reporter: Reporter) -> RunDir:
    """Train one variant, or continue its unfinished run; return the completed run.

    Raises AblationCancelled when the run was cancelled, and RuntimeError when it failed.
    """
    from deft_core.training.command import execute

    run = ablation.variant_run(variant.name)
    if run is None:
        run = create_run(variant.train, root=ablation.runs_folder)
        runs = {**ablation.status().get("runs", {}), variant.name: str(run.path)}
        ablation.set_status("running", runs=runs)
    if run.status()["state"] == "completed":
        return run

    run.cancel_path.unlink(missing_ok=True)
    ablation.set_status("running", phase="training", current_variant=variant.name, current_run=str(run.path))
    reporter.report(variant.name, "training", run.status().get("step", 0), variant.train.max_steps, "steps")
    logger.info("training %s in %s", variant.name, run.path)
    # execute prints the run's summary to stdout; stdout is for the ablation table, so send it to stderr.
    watcher = RunWatcher(ablation, run, reporter, variant.name, variant.train.max_steps)
    with watcher, contextlib.redirect_stdout(sys.stderr):
        execute(run, run.config())
    gc.collect()

    status = run.status()
    if status["state"] == "cancelled":
        raise AblationCancelled
    if status["state"] != "completed":
        raise RuntimeError(f"variant {variant.name} failed in run {run.run_id}: {status.get('error')}")
    reporter.report(variant.name, "training", status.get("step", 0), status.get("step", 0), "steps")
    return run


def save_results(ablation: AblationDir, results: dict[str, Any]) -> None:
    ablation.write_results(results)
    ablation.write_text("results.csv", tables.csv_text(results["rows"]))


def run_ablation(ablation: AblationDir, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Evaluate the base model and train and evaluate each variant not finished yet; return results.json."""
    config = ablation.config()
    reporter = Reporter(ablation, progress)
    template, alpha = score_file_options(config.scores)
    variants = variant_configs(config, template)
    ablation.set_status("running", phase="preparing", current_variant=None, current_run=None)
    reporter.report("held-out split", "preparing", 0, 1, "steps")
    shared = shared_evaluation(variants[-1].train, alpha)
    reporter.report("held-out split", "preparing", 1, 1, "steps")

    results = ablation.results()
    results.update(
        {
            "held_out_pairs": len(shared.held_out),
            "generation_prompts": min(config.eval_limit or len(shared.held_out), len(shared.held_out)),
            "pool_pairs": shared.pool_pairs,
            "template": template,
        }
    )
    finished = {row["variant"] for row in results["rows"]}
    if "base" not in finished:
        metrics, seconds = evaluate(ablation, config, shared, "base", "base", reporter)
        results["rows"].insert(0, tables.base_row(metrics, seconds))
        save_results(ablation, results)
        ablation.set_status("running", finished=["base"])

    for variant in variants:
        if variant.name in finished:
            logger.info("skipping %s: already evaluated", variant.name)
            continue
        if ablation.cancel_requested():
            raise AblationCancelled
        run = train_variant(ablation, variant, reporter)
        metrics, seconds = evaluate(ablation, config, shared, variant.name, str(run.path), reporter)
        results["rows"].append(tables.variant_row(variant, run, metrics, seconds))
        tables.fill_base_logprob_accuracy(results["rows"], run)
        save_results(ablation, results)
        ablation.set_status("running", finished=[row["variant"] for row in results["rows"]])

    title = f"Ablation {ablation.ablation_id}"
    html = tables.plots_html(results["rows"], len(shared.held_out), results["generation_prompts"], title)
    ablation.write_text("plots.html", html)
    return results


def execute_ablation(ablation: AblationDir, progress: ProgressCallback | None = None) -> int:
    """Run the ablation in this process with its log file attached; record how it ended.

    Returns 0 when it completed or was cancelled and 1 when it failed. A DeftError (a user
    mistake such as a missing file) is re-raised after the status is written, so the CLI can
    report it in one line.
    """
    handler = logging.FileHandler(ablation.path / "ablation.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package_logger = logging.getLogger("deft_core")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(logging.INFO)
    # SIGTERM outside training requests a cancel. Inside it, the training loop's own handler does.
    previous_signal = signal.signal(signal.SIGTERM, lambda *_: ablation.request_cancel())
    try:
        ablation.set_status("running", pid=os.getpid(), error=None, started_at=now())
        run_ablation(ablation, progress)
    except (AblationCancelled, KeyboardInterrupt) as stop:
        ablation.set_status("cancelled", current_run=None)
        logger.info("ablation %s cancelled", ablation.ablation_id)
        if isinstance(stop, KeyboardInterrupt):
            raise
        return 0
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"
        ablation.set_status("failed", error=message)
        if isinstance(error, DeftError):
            logger.error("ablation %s failed: %s", ablation.ablation_id, message)
            raise
        logger.error("ablation %s failed: %s\n%s", ablation.ablation_id, message, traceback.format_exc())
        print(f"deft: ablation {ablation.ablation_id} failed: {message}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_signal)
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
    ablation.set_status("completed", phase="done", current_variant=None, current_run=None, completed_at=now())
    return 0
