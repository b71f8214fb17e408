"""Resumable checkpoints: adapter weights, optimizer, scheduler, step and random-number states."""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Older checkpoints are deleted beyond this many; the newest is the one resume reads.
KEEP_CHECKPOINTS = 2


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(session: Any, step: int) -> Path:
    """Write checkpoints/step-N as a whole: a crash mid-write leaves no partial checkpoint."""
    root = session.run.checkpoints
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{step}.", dir=root))
    try:
        session.model.save_pretrained(staging / "adapter", safe_serialization=True)
        torch.save(session.optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(session.scheduler.state_dict(), staging / "scheduler.pt")
        torch.save(rng_state(), staging / "rng.pt")
        (staging / "state.json").write_text(json.dumps({"step": step}), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prune(root)
    logger.info("saved checkpoint %s", final)
    return final


def prune(root: Path) -> None:
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in root.glob("step-*") if (p / "state.json").is_file()
    )
    for _, path in steps[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(path, ignore_errors=True)


def restore(session: Any) -> int:
    """Load the newest checkpoint into the session; return the optimizer step it was saved at."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = session.run.latest_checkpoint()
    weights = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(session.model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"checkpoint {folder} has adapter weights this model lacks: {unexpected[:3]}")
    # weights_only=False: these files were written by this process's own save(), in the run folder.
    session.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    session.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
    step = int(json.loads((folder / "state.json").read_text(encoding="utf-8"))["step"])
    logger.info("resumed from checkpoint %s at step %d", folder, step)
    return step
