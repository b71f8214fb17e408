"""The guided LoRA training loop: setup, optimizer steps, evaluation, checkpoints and the summary.

Under `accelerate launch` with N processes (deft_core.distributed) the loop is data-parallel. Every
process keeps a whole copy of the model and runs every N-th micro-batch of each optimizer step, so the
pairs per optimizer step stay batch_size x grad_accum. The LoRA gradients are summed across
processes before clipping and the optimizer step, and metrics are computed over all pairs. Only
the main process writes to the run folder.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deft_core import distributed
from deft_core.encoding import EncodedPair, PairEncoder
from deft_core.errors import DeftError
from deft_core.models import load_model
from deft_core.progress import ProgressCallback, ProgressTracker
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


def visited_pairs(config: TrainConfig, count: int, steps: int) -> np.ndarray:
    """Return a mask of the training pairs that `steps` optimizer steps use. Shape: (count,)."""
    visited = np.zeros(count, dtype=bool)
    micro_steps = steps * config.grad_accum
    epochs_covered = micro_steps // -(-count // config.batch_size) if count else 0
    if epochs_covered >= 1:
        visited[:] = True
        return visited
    for micro_step in range(micro_steps):
        visited[micro_batch_indices(count, config.batch_size, micro_step, config.seed)] = True
    return visited


def split_micro_batches(grad_accum: int, batch_size: int, rank: int, world: int) -> list[int]:
    """Return which of each optimizer step's grad_accum micro-batches process `rank` of `world` runs.

    Process r runs micro-batches r, r + world, r + 2 * world and so on. grad_accum must be a
    multiple of world, so that every process runs as many micro-batches as the others and the
    pairs per optimizer step stay as configured.
    """
    if grad_accum % world:
        raise DeftError(
            f"grad_accum {grad_accum} does not split evenly across {world} processes; set grad_accum "
            f"to a multiple of {world} (pairs per optimizer step = batch_size x grad_accum "
            f"= {batch_size * grad_accum})"
        )
    return list(range(rank, grad_accum, world))


def local_micro_batches(config: TrainConfig) -> list[int]:
    """Return the micro-batches of each optimizer step that this process runs."""
    return split_micro_batches(
        config.grad_accum, config.batch_size, distributed.rank(), distributed.world_size()
    )


@contextmanager
def micro_batch_rng(seed: int, micro_step: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generator from (seed, micro_step) for one micro-batch, then restore it.

    Dropout masks then depend only on the micro-batch, not on the process that runs it or on
    what ran before, so runs with one or several processes, and resumed runs, draw the same masks.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(np.random.SeedSequence([seed, micro_step]).generate_state(1)[0]))
        yield


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
    if distributed.is_main():
        (run.path / "token_check.txt").write_text("\n".join(check.lines()) + "\n", encoding="utf-8")
    for warning in check.warnings:
        logger.warning("token check: %s", warning)

    vocab_size = loaded.model.get_output_embeddings().weight.shape[0]
    alpha = float(split.score_meta["options"]["alpha"]) if split.score_meta else 0.0
    distributions = guidance_distributions(encoder, split.pool, vocab_size, alpha)
    model = add_lora(loaded, config)
    # Every process starts from the main process's adapter weights (the seed makes them equal on
    # one kind of hardware; the broadcast makes sure).
    distributed.broadcast_tensors_([p for p in model.parameters() if p.requires_grad])
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    forward = PolicyForward(model, distributions.q_diff, config.reward_form, pad_id)

    # Only the training pairs that the step budget reaches need reference log-probs: a short run
    # on a large set would otherwise run the reference model over every pair first.
    steps = total_steps(config, len(train.encoded))
    visited = visited_pairs(config, len(train.encoded), steps)
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
        if name == "eval":
            # Held-out references come from the batches evaluation uses, so the implicit rewards
            # start at exactly 0. Score-file values, batched differently, differ by bf16 rounding.
            usable[:] = False
        needed = ~usable if name == "eval" else ~usable & visited
        if name == "train":
            values[~usable & ~visited] = float("nan")  # never read; a NaN loss would show a bug
        missing = np.flatnonzero(needed).tolist()
        if missing:
            computed = shared_reference_logps(forward, [part.encoded[i] for i in missing], config.batch_size)
            values[missing] = computed
        logger.info(
            "%s reference log-probs: %d from the score file, %d computed, %d skipped (no step reaches them)",
            name,
            int(usable.sum()),
            len(missing),
            int((~usable).sum()) - len(missing),
        )
        references.append(values)

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
        "processes": distributed.world_size(),
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


def shared_reference_logps(
    forward: PolicyForward, encoded: list[EncodedPair], batch_size: int
) -> torch.Tensor:
    """Compute reference log-probs in batches of batch_size, every process taking every N-th batch.

    Each batch contains the same pairs as in a single process, so the values are the same. Shape: (N, 2).
    """
    if distributed.world_size() == 1:
        return reference_logps(forward, encoded, batch_size)
    starts = list(range(0, len(encoded), batch_size))
    local = [
        (starts[n], reference_logps(forward, encoded[starts[n] : starts[n] + batch_size], batch_size))
        for n in distributed.shares(len(starts))
    ]
    result = torch.zeros(len(encoded), 2)
    for start, values in distributed.gather_objects(local):
        result[start : start + len(values)] = values
    return result


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps: int):
    from transformers import get_scheduler

    warmup = round(config.warmup_ratio * steps)
    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=steps)


def evaluate(session: Session) -> dict[str, float]:
    """Return eval/* metrics on the held-out pairs, with the adapter on and dropout off.

    Processes split the batches; the sums run in batch order, as in a single process.
    """
    if not session.eval.encoded:
        return {}
    model = session.model
    model.eval()
    encoded, batch_size = session.eval.encoded, session.config.batch_size
    starts = list(range(0, len(encoded), batch_size))
    results = []
    with torch.inference_mode():
        for number in distributed.shares(len(starts)):
            indices = list(range(starts[number], min(starts[number] + batch_size, len(encoded))))
            batch = collate([encoded[i] for i in indices], indices, session.forward.pad_id)
            outputs = session.forward.pair_outputs(batch, session.eval_reference[indices])
            parts = deft_loss(session.config.method, outputs, session.params)
            values = {
                "loss": parts.total.item(),
                "guidance": parts.guidance.item(),
                **preference_metrics(outputs, session.config.beta),
            }
            results.append((number, len(indices), values))
    model.train()
    totals: dict[str, float] = {}
    for _, count, values in sorted(distributed.gather_objects(results), key=lambda r: r[0]):
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value * count
    return {f"eval/{key}": value / len(encoded) for key, value in totals.items()}


def run_micro_batch(session: Session, micro_step: int) -> tuple[int, int, int, dict[str, float]]:
    """Run forward and backward on one micro-batch; return (micro_step, pairs, tokens, metric values).

    The backward pass adds the summed (not mean) loss of the pairs to the gradients; a
    non-finite loss is returned without a backward pass.
    """
    config = session.config
    indices = session.train_pairs_at(micro_step)
    batch = collate([session.train.encoded[i] for i in indices], indices, session.forward.pad_id)
    with micro_batch_rng(config.seed, micro_step, session.forward.device):
        outputs = session.forward.pair_outputs(batch, session.train_reference[indices])
        parts = deft_loss(config.method, outputs, session.params)
        if torch.isfinite(parts.total):
            (parts.total * len(indices)).backward()
    values = {
        "loss": parts.total.item(),
        "base_loss": parts.base.item(),
        "guidance": parts.guidance.item(),
        **preference_metrics(outputs, config.beta),
    }
    return micro_step, len(indices), batch.tokens, values


def average_gradients(parameters: list[torch.nn.Parameter], pairs: int) -> None:
    """Sum the gradients over all processes, then divide by the optimizer step's pairs."""
    if distributed.world_size() > 1:
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        distributed.sum_tensors_([p.grad for p in parameters])
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad /= pairs


def optimizer_step(session: Session, step: int) -> dict[str, float]:
    """Run grad_accum micro-batches and one optimizer step; return the train/* metrics."""
    config = session.config
    started = time.perf_counter()
    local = [run_micro_batch(session, step * config.grad_accum + m) for m in local_micro_batches(config)]
    results = sorted(distributed.gather_objects(local), key=lambda r: r[0])
    for _, _, _, values in results:
        if not math.isfinite(values["loss"]):
            raise DeftError(f"loss is {values['loss']} at step {step + 1}; lower learning_rate or omega")

    totals: dict[str, float] = {}
    for _, count, _, values in results:
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value * count
    pairs = sum(r[1] for r in results)
    tokens = sum(r[2] for r in results)
    # The gradient is the mean over the optimizer step's pairs, whatever the micro-batch sizes.
    trainable = [p for p in session.model.parameters() if p.requires_grad]
    average_gradients(trainable, pairs)
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
    if not distributed.is_main():
        return
    epoch = (step * session.config.grad_accum * session.config.batch_size) / max(
        1, len(session.train.encoded)
    )
    session.run.append_metrics({"step": step, "epoch": round(epoch, 4), "time": time.time(), **metrics})


def train_run(config: TrainConfig, run: RunDir, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Train (or resume) the run in `run`; return its summary. Cancellation saves a checkpoint.

    `progress` receives a snapshot after every optimizer step, counting the steps this call runs.
    """
    started = time.perf_counter()
    main = distributed.is_main()
    session = build_session(config, run)
    start_step = checkpoints.restore(session)
    if main:
        run.set_status("running", step=start_step, total_steps=session.total_steps, data=session.data_report)
    described = ", ".join(f"{key} {value}" for key, value in session.data_report.items())
    logger.info("training %d steps from step %d; data: %s", session.total_steps, start_step, described)
    session.model.train()
    if start_step == 0:
        record(session, 0, evaluate(session))

    state = "completed"
    done = start_step
    stage = f"training from step {start_step}" if start_step else "training"
    callback = progress if main else None
    tracker = ProgressTracker(stage, session.total_steps - start_step, callback, unit="steps")
    for step in range(start_step, session.total_steps):
        metrics = optimizer_step(session, step)
        done = step + 1
        tracker.advance(1, tokens=round(metrics["train/tokens_per_s"] * metrics["train/seconds"]))
        evaluating = done % config.eval_steps == 0 or done == session.total_steps
        if done % config.logging_steps == 0 or evaluating:
            record(session, done, {**metrics, **(evaluate(session) if evaluating else {})})
        if main:
            run.set_status("running", step=done)
        # The main process's CANCEL file decides for every process.
        if distributed.broadcast_object(run.cancel_requested() if main else None):
            checkpoints.save(session, done)
            state = "cancelled"
            logger.info("cancel requested: saved step %d", done)
            break
        if done % config.save_steps == 0 and done < session.total_steps:
            checkpoints.save(session, done)

    summary = finish(session, state, done, started)
    if main:
        run.set_status(state, step=summary["step"])
    # No process reports success before the main process has written the adapter and summary.
    distributed.barrier()
    return summary


def finish(session: Session, state: str, step: int, started: float) -> dict[str, Any]:
    """Save the adapter (and the merged model if asked) and write summary.json."""
    run, config = session.run, session.config
    if not distributed.is_main():
        return {"state": state, "step": step, "total_steps": session.total_steps}
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
    from deft_core.job_folders import write_json

    write_json(run.path / "summary.json", summary)
    return summary


def export_merged(session: Session) -> None:
    """Save base + adapter merged into plain weights, merging a copy so the run keeps its adapter."""
    import copy

    merged = copy.deepcopy(session.model).merge_and_unload()
    merged.save_pretrained(session.run.path / "merged", safe_serialization=True)
    session.tokenizer.save_pretrained(session.run.path / "merged")
    logger.info("saved the merged model to %s", session.run.path / "merged")
