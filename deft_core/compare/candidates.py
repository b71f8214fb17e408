"""The models a comparison evaluates: the base model, or a finished run's LoRA adapter over it."""

from __future__ import annotations

import logging
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deft_core.encoding import resolve_template
from deft_core.errors import DeftError
from deft_core.models import LoadedModel, first_line, load_model
from deft_core.training.runs import RunDir, open_run

logger = logging.getLogger(__name__)

BASE = "base"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class Candidate:
    """One model under evaluation. For a run, `model` is a peft model whose adapter can be disabled."""

    label: str  # "base" or the run id
    loaded: LoadedModel  # the base model and tokenizer as loaded
    model: Any  # what generates and is scored: the base model or the peft model around it
    template: str  # prompt rendering, resolved: "chat" or "raw"
    run: RunDir | None = None

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def has_adapter(self) -> bool:
        return self.run is not None

    def reference(self) -> AbstractContextManager:
        """Return a context in which `model` computes pi_ref: the adapter off, or nothing for the base."""
        return self.model.disable_adapter() if self.has_adapter else nullcontext()

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "base_model": self.loaded.spec,
            "model_hash": self.loaded.model_hash,
            "adapter": str(self.run.path / "adapter") if self.run is not None else None,
            "template": self.template,
            "device": str(self.loaded.device),
            "dtype": str(self.loaded.dtype).removeprefix("torch."),
        }


def finished_adapter(run: RunDir) -> Path:
    """Return the run's adapter folder; raise DeftError naming the run unless it completed with one."""
    state = run.status().get("state")
    if state == "running":
        raise DeftError(
            f"run {run.run_id} is still training; compare needs a completed run, so wait until it finishes"
        )
    if state != "completed":
        raise DeftError(
            f"run {run.run_id} did not finish (state: {state}); compare needs a completed run. "
            f"Resume it with `deft train --resume {run.run_id}`"
        )
    folder = run.path / "adapter"
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise DeftError(f"run {run.run_id} has no adapter: {', '.join(missing)} missing in {folder}")
    return folder


def run_template(run: RunDir, tokenizer: Any) -> str:
    """Return the template the run trained with: the resolved one in summary.json, else its config's."""
    summary = run.summary() or {}
    template = (summary.get("data") or {}).get("template")
    return template or resolve_template(tokenizer, run.config().template)


def load_candidate(
    model_ref: str,
    base_model: str = "bundled",
    device: str = "auto",
    dtype: str = "auto",
    template: str = "auto",
) -> Candidate:
    """Load "base" (the model `base_model`) or a run (its config's model with its adapter) for inference.

    `template` "auto" means the run's training template for a run, and the model's chat template
    (raw text without one) for the base model.
    """
    if model_ref == BASE:
        loaded = load_model(base_model, device, dtype)
        return Candidate(BASE, loaded, loaded.model, resolve_template(loaded.tokenizer, template))

    run = open_run(model_ref)
    adapter = finished_adapter(run)
    config = run.config()
    loaded = load_model(config.model, device, dtype)
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # peft 0.21 calls a transformers 5 method that warns of its own deprecation on every load.
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(loaded.model, str(adapter))
    except (OSError, ValueError, RuntimeError) as error:
        raise DeftError(f"cannot load the adapter of run {run.run_id}: {first_line(error)}") from error
    model.to(loaded.device).eval()
    chosen = run_template(run, loaded.tokenizer) if template == "auto" else template
    logger.info("loaded run %s: adapter %s over %s", run.run_id, adapter, config.model)
    return Candidate(run.run_id, loaded, model, resolve_template(loaded.tokenizer, chosen), run)
