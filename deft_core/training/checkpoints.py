"""Resumable checkpoints: adapter weights, optimizer, scheduler, step and random-number states.

Under a launch of several processes only the main process writes and reads checkpoint files.
restore() sends what it read to the other processes, so they need no access to the run folder.
"""

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

from deft_core import distributed

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
    """Write checkpoints/step-N as a whole: a crash mid-write leaves no partial checkpoint.

    Other processes than the main one write nothing and return the same path.
    """
    root = session.run.checkpoints
    final = root / f"step-{step}"
    if not distributed.is_main():
        return final
    root.mkdir(parents=True, exist_ok=True)
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


def read(folder: Path) -> dict[str, Any]:
    """Read one checkpoint folder into memory, every tensor on the CPU."""
    from safetensors.torch import load_file

    # weights_only=False: these files were written by save() in this run's own folder.
    def load(name: str) -> Any:
        return torch.load(folder / name, map_location="cpu", weights_only=False)

    return {
        "folder": str(folder),
        "weights": load_file(str(folder / "adapter" / "adapter_model.safetensors")),
        "optimizer": load("optimizer.pt"),
        "scheduler": load("scheduler.pt"),
        "rng": load("rng.pt"),
        "step": int(json.loads((folder / "state.json").read_text(encoding="utf-8"))["step"]),
    }


def restore(session: Any) -> int:
    """Load the newest checkpoint into the session; return its optimizer step, or 0 without one."""
    from peft import set_peft_model_state_dict

    folder = session.run.latest_checkpoint() if distributed.is_main() else None
    checkpoint = distributed.broadcast_object(read(folder) if folder is not None else None)
    if checkpoint is None:
        return 0
    result = set_peft_model_state_dict(session.model, checkpoint["weights"])
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(
            f"checkpoint {checkpoint['folder']} has adapter weights this model lacks: {unexpected[:3]}"
        )
    # Optimizer.load_state_dict moves the state onto each parameter's device.
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    logger.info("resumed from checkpoint %s at step %d", checkpoint["folder"], checkpoint["step"])
    return checkpoint["step"]
