"""The guided LoRA training loop: setup, optimizer steps, evaluation, checkpoints and the summary."""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deft_core.encoding import PairEncoder
from deft_core.errors import DeftError
from deft_core.models import load_model
from deft_core.training import checkpoints
from deft_core.training.checks import check_tokens
from deft_core.training.config import TrainConfig
from deft_core.training.data import (
    EncodedSplit,
    collate,
    encode_split,
    guidance_distributions,
    load_split,
    micro_batch_indices,
    training_template,
)
from deft_core.training.losses import LossParams, deft_loss, preference_metrics
from deft_core.training.policy import PolicyForward, add_lora, reference_logps, reusable_reference
from deft_core.training.runs import RunDir

logger = logging.getLogger(__name__)


@dataclass
class Session:
    """Everything a run needs once set up: model, data, reference log-probs, optimizer."""

    config: TrainConfig
    run: RunDir
    model: Any
    forward: PolicyForward
    train: EncodedSplit
    eval: EncodedSplit
    train_reference: torch.Tensor  # (N_train, 2)
    eval_reference: torch.Tensor  # (N_eval, 2)
    params: LossParams
    optimizer: torch.optim.Optimizer
    scheduler: Any
    total_steps: int
    data_report: dict[str, Any]
    tokenizer: Any

    def train_pairs_at(self, micro_step: int) -> list[int]:
        return micro_batch_indices(
            len(self.train.encoded), self.config.batch_size, micro_step, self.config.seed
        )


def total_steps(config: TrainConfig, train_pairs: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = math.ceil(train_pairs / config.batch_size) / config.grad_accum
    return max(1, math.ceil(per_epoch * config.epochs))


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_session(config: TrainConfig, run: RunDir) -> Session:
    """Load data and model, add LoRA, check tokens, and get the reference log-probs."""
    set_seed(config.seed)
    split = load_split(config)
    loaded = load_model(config.model, config.device, config.dtype)
    template = training_template(config, split.score_meta)
    encoder = PairEncoder(loaded.tokenizer, template, config.max_length)
    train = encode_split(encoder, split.train, "training pairs")
    held_out = encode_split(encoder, split.eval, "held-out pairs")

    check = check_tokens(loaded.tokenizer, train.encoded[0], encoder.end_ids)
    (run.path / "token_check.txt").write_text("\n".join(check.lines()) + "\n", encoding="utf-8")
    for warning in check.warnings:
        logger.warning("token check: %s", warning)

    vocab_size = loaded.model.get_output_embeddings().weight.shape[0]
    alpha = float(split.score_meta["options"]["alpha"]) if split.score_meta else 0.0
    distributions = guidance_distributions(encoder, split.pool, vocab_size, alpha)
    model = add_lora(loaded, config)
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    forward = PolicyForward(model, distributions.q_diff, config.reward_form, pad_id)

    references = []
    for name, part in (("train", train), ("eval", held_out)):
        values, usable = reusable_reference(
            split.score_table,
            split.score_meta,
            [p.id for p in part.pairs],
            part.encoded,
            loaded,
            template,
            config.max_length,
        )
        missing = np.flatnonzero(~usable).tolist()
        if missing:
            computed = reference_logps(forward, [part.encoded[i] for i in missing], config.batch_size)
            values[missing] = computed
        logger.info(
            "%s reference log-probs: %d from the score file, %d computed",
            name,
            int(usable.sum()),
            len(missing),
        )
        references.append(values)

    steps = total_steps(config, len(train.encoded))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(config, optimizer, steps)
    report = {
        "template": encoder.template,
        "train_pairs": len(train.encoded),
        "eval_pairs": len(held_out.encoded),
        "pool_pairs": len(split.pool),
        "truncated_train": train.truncated,
        "truncated_eval": held_out.truncated,
        "token_check_warnings": check.warnings,
        "model": loaded.describe(),
        "omega": config.guidance_weight,
    }
    params = LossParams(config.beta, config.lambda_sft, config.guidance_weight, config.pair_score)
    return Session(
        config,
        run,
        model,
        forward,
        train,
        held_out,
        references[0],
        references[1],
        params,
        optimizer,
        scheduler,
        steps,
        report,
        loaded.tokenizer,
    )


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps: int):
    from transformers import get_scheduler

    warmup = round(config.warmup_ratio * steps)
    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=steps)


def evaluate(session: Session) -> dict[str, float]:
    """Return eval/* metrics on the held-out pairs, with the adapter on and dropout off."""
    if not session.eval.encoded:
        return {}
    model = session.model
    model.eval()
    totals: dict[str, float] = {}
    encoded, batch_size = session.eval.encoded, session.config.batch_size
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            indices = list(range(start, min(start + batch_size, len(encoded))))
            batch = collate([encoded[i] for i in indices], indices, session.forward.pad_id)
            outputs = session.forward.pair_outputs(batch, session.eval_reference[indices])
            parts = deft_loss(session.config.method, outputs, session.params)
            values = {
                "loss": parts.total.item(),
                "guidance": parts.guidance.item(),
                **preference_metrics(outputs, session.config.beta),
            }
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value * len(indices)
    model.train()
    return {f"eval/{key}": value / len(encoded) for key, value in totals.items()}


def optimizer_step(session: Session, step: int) -> dict[str, float]:
    """Run grad_accum micro-batches and one optimizer step; return the train/* metrics."""
    config = session.config
    started = time.perf_counter()
    totals: dict[str, float] = {}
    tokens = pairs = 0
    for micro in range(config.grad_accum):
        indices = session.train_pairs_at(step * config.grad_accum + micro)
        batch = collate([session.train.encoded[i] for i in indices], indices, session.forward.pad_id)
        outputs = session.forward.pair_outputs(batch, session.train_reference[indices])
        parts = deft_loss(config.method, outputs, session.params)
        if not torch.isfinite(parts.total):
            raise DeftError(f"loss is {parts.total.item()} at step {step + 1}; lower learning_rate or omega")
        (parts.total * len(indices)).backward()
        values = {
            "loss": parts.total.item(),
            "base_loss": parts.base.item(),
            "guidance": parts.guidance.item(),
            **preference_metrics(outputs, config.beta),
        }
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value * len(indices)
        tokens += int(batch.attention_mask.sum())
        pairs += len(indices)
    # The gradient is the mean over the optimizer step's pairs, whatever the micro-batch sizes.
    trainable = [p for p in session.model.parameters() if p.requires_grad]
    for parameter in trainable:
        if parameter.grad is not None:
            parameter.grad /= pairs
    clip = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, clip))
    lr = session.scheduler.get_last_lr()[0]
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    metrics = {f"train/{key}": value / pairs for key, value in totals.items()}
    metrics.update(
        {
            "train/lr": lr,
            "train/grad_norm": grad_norm,
            "train/tokens_per_s": tokens / seconds,
            "train/seconds": seconds,
        }
    )
    return metrics


def record(session: Session, step: int, metrics: dict[str, float]) -> None:
    epoch = (step * session.config.grad_accum * session.config.batch_size) / max(
        1, len(session.train.encoded)
    )
    session.run.append_metrics({"step": step, "epoch": round(epoch, 4), "time": time.time(), **metrics})


def train_run(config: TrainConfig, run: RunDir) -> dict[str, Any]:
    """Train (or resume) the run in `run`; return its summary. Cancellation saves a checkpoint."""
    started = time.perf_counter()
    session = build_session(config, run)
    start_step = checkpoints.restore(session) if run.latest_checkpoint() else 0
    run.set_status("running", step=start_step, total_steps=session.total_steps, data=session.data_report)
    logger.info("training %d steps from step %d: %s", session.total_steps, start_step, session.data_report)
    session.model.train()
    if start_step == 0:
        record(session, 0, evaluate(session))

    state = "completed"
    done = start_step
    for step in range(start_step, session.total_steps):
        metrics = optimizer_step(session, step)
        done = step + 1
        evaluating = done % config.eval_steps == 0 or done == session.total_steps
        if done % config.logging_steps == 0 or evaluating:
            record(session, done, {**metrics, **(evaluate(session) if evaluating else {})})
        run.set_status("running", step=done)
        if run.cancel_requested():
            checkpoints.save(session, done)
            state = "cancelled"
            logger.info("cancel requested: saved step %d", done)
            break
        if done % config.save_steps == 0 and done < session.total_steps:
            checkpoints.save(session, done)

    summary = finish(session, state, done, started)
    run.set_status(state, step=summary["step"])
    return summary


def finish(session: Session, state: str, step: int, started: float) -> dict[str, Any]:
    """Save the adapter (and the merged model if asked) and write summary.json."""
    run, config = session.run, session.config
    if state == "completed":
        session.model.save_pretrained(run.path / "adapter", safe_serialization=True)
        if config.export_merged:
            export_merged(session)
    history = run.metrics()
    evals = [r for r in history if "eval/loss" in r]
    summary = {
        "state": state,
        "step": step,
        "total_steps": session.total_steps,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "data": session.data_report,
        "eval_first": evals[0] if evals else None,
        "eval_last": evals[-1] if evals else None,
        "adapter": str(run.path / "adapter") if state == "completed" else None,
    }
    from deft_core.training.runs import write_json

    write_json(run.path / "summary.json", summary)
    return summary


def export_merged(session: Session) -> None:
    """Save base + adapter merged into plain weights, merging a copy so the run keeps its adapter."""
    import copy

    merged = copy.deepcopy(session.model).merge_and_unload()
    merged.save_pretrained(session.run.path / "merged", safe_serialization=True)
    session.tokenizer.save_pretrained(session.run.path / "merged")
    logger.info("saved the merged model to %s", session.run.path / "merged")
