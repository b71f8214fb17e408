"""The settings of one ablation and the six training configs it plans.

This module imports no torch, so the CLI and the dashboard can build and check a config quickly.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from deft_core.errors import DeftError
from deft_core.training.config import (
    DEFAULT_OMEGA,
    METHODS,
    TrainConfig,
    convert_settings,
    option,
    read_config_file,
    resolve_path,
)

# Fields that name files. Relative paths in a YAML file are resolved against the file's folder.
PATH_FIELDS = ("data", "scores")
# TrainConfig fields the ablation sets itself, identically for every variant or per variant.
CONTROLLED = (
    "data",
    "scores",
    "model",
    "method",
    "seed",
    "max_steps",
    "epochs",
    "eval_size",
    "max_length",
    "batch_size",
    "grad_accum",
    "learning_rate",
    "omega",
    "beta",
    "selection",
    "selection_value",
    "device",
    "dtype",
    "eval_steps",
    "logging_steps",
    "name",
    "export_merged",
)
SELECTIONS = ("top", "random", "full")


@dataclass
class AblationConfig:
    """Every setting of one ablation. Invalid values raise DeftError listing them all."""

    # The data and the held-out split.
    data: str = option("sample", "preference data: a pairs file, a Hugging Face dataset id, or 'sample'")
    scores: str = option(
        "", "score file from `deft score` on the same data; the top k% variants select by it"
    )
    k_percent: float = option(5.0, "size of the top and random subsets, in percent of the training pool")
    eval_size: int = option(
        64, "pairs held out before any selection, shared by every variant and the base model"
    )
    seed: int = option(0, "one seed for the held-out split, the random subset, data order and LoRA init")

    # The model and training, the same for every variant.
    model: str = option(
        "bundled", "'bundled' (SmolLM2-135M-Instruct), a Hub id, a model folder or a .gguf file"
    )
    method: str = option("dpo", "base loss of every variant: dpo, sft or pro", choices=METHODS)
    omega: float | None = option(
        None, "guidance weight of the guided variants (> 0); empty: the measured default for the method"
    )
    max_steps: int = option(10, "optimizer steps of every variant (the step budget)")
    batch_size: int = option(2, "pairs per forward pass (micro-batch)")
    grad_accum: int = option(4, "micro-batches per optimizer step")
    learning_rate: float = option(2e-4, "peak learning rate of AdamW")
    beta: float = option(
        0.1, "DPO: scale of the implicit reward beta * log(pi / pi_ref), in training and evaluation"
    )
    max_length: int = option(512, "maximum tokens of prompt + response in training and evaluation")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    dtype: str = option("auto", "model weights: auto (bf16 where supported), float32, bfloat16, float16")
    # option() builds a default_factory field for this mutable default, so RUF009 does not apply.
    train_settings: dict = option(  # noqa: RUF009
        dict, "further training settings for every variant, e.g. {lora_r: 4, limit: 500}"
    )

    # Evaluation of the base model and of every variant.
    eval_limit: int | None = option(
        32, "held-out pairs whose prompts get generations (BLEU, reward of generations); empty: all"
    )
    max_new_tokens: int = option(48, "tokens generated per prompt")
    do_sample: bool = option(False, "sample generations; false decodes greedily")
    temperature: float = option(1.0, "sampling temperature, > 0; used when do_sample is true")
    top_p: float = option(1.0, "nucleus sampling mass in (0, 1]; used when do_sample is true")
    generation_batch_size: int = option(8, "prompts per generation batch")
    name: str = option("", "short label added to the ablation id")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise DeftError("invalid ablation config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Return every invalid value as a readable sentence; empty when the config is valid."""
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.k_percent < 100:
            problems.append(f"k_percent must be a percentage in (0, 100), got {self.k_percent}")
        if not self.scores:
            problems.append(
                "scores is required: the top k% variants select by it (create one with "
                "`deft score DATA --out FILE.parquet`)"
            )
        for name in ("eval_size", "max_steps", "batch_size", "grad_accum", "max_new_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.generation_batch_size < 1:
            problems.append(f"generation_batch_size must be at least 1, got {self.generation_batch_size}")
        if self.eval_limit is not None and self.eval_limit < 1:
            problems.append(f"eval_limit must be at least 1 or empty, got {self.eval_limit}")
        if self.omega is not None and not (math.isfinite(self.omega) and self.omega > 0):
            problems.append(
                f"omega must be a finite number > 0 (the unguided variants use 0), got {self.omega}"
            )
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        problems += self.train_settings_problems()
        return problems

    def train_settings_problems(self) -> list[str]:
        known = {f.name for f in fields(TrainConfig)}
        keys = set(self.train_settings)
        problems = []
        if unknown := sorted(keys - known):
            problems.append(f"train_settings: unknown setting(s) {', '.join(unknown)}")
        if controlled := sorted(keys & set(CONTROLLED)):
            problems.append(
                f"train_settings cannot set {', '.join(controlled)}: the ablation sets them; "
                "use its own fields"
            )
        if problems or self.method not in METHODS:
            return problems
        # Build the plain full-set variant's TrainConfig, which needs no score file, so that
        # invalid training values show up here and not when a variant starts.
        values = {**shared_train_settings(self, "auto"), "selection": "full", "omega": 0.0}
        try:
            TrainConfig(**values)
        except DeftError as error:
            problems.append(str(error).removeprefix("invalid training config: "))
        return problems

    @property
    def guidance_weight(self) -> float:
        """Return the guided variants' omega: the configured one, or the method's measured default."""
        return DEFAULT_OMEGA[self.method] if self.omega is None else self.omega

    def missing_files(self) -> list[str]:
        """Return problems with input files that must exist before an ablation starts."""
        if self.scores and not Path(self.scores).is_file():
            return [
                f"score file not found: {self.scores}; create it with "
                f"`deft score {self.data} --out {self.scores}`"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a training subset, with or without guidance, and its TrainConfig."""

    name: str  # e.g. "top-guided"; also the key of the variant in status and results files
    selection: str  # one of SELECTIONS
    guided: bool
    train: TrainConfig


def variant_configs(config: AblationConfig, template: str) -> list[Variant]:
    """Plan the six variants: top k%, random k% and full, each guided and plain.

    Every TrainConfig has the same data, seed, held-out split, step budget, optimizer and
    template; only `selection`, `selection_value` and `omega` differ. Evaluation inside the run
    happens only at the start and the end (eval_steps = max_steps), because the ablation
    compares final models. `template` must be the score file's template, so that the full and
    random variants render pairs the way the top variant, read from the score file, does.
    """
    shared = shared_train_settings(config, template)
    variants = []
    for selection in SELECTIONS:
        value = 100.0 if selection == "full" else config.k_percent
        for guided in (True, False):
            name = f"{selection}-{'guided' if guided else 'plain'}"
            train = TrainConfig(
                **shared,
                selection=selection,
                selection_value=value,
                omega=config.guidance_weight if guided else 0.0,
                name=f"ablation-{name}",
            )
            variants.append(Variant(name, selection, guided, train))
    return variants


def shared_train_settings(config: AblationConfig, template: str) -> dict[str, Any]:
    """Return the TrainConfig values that every variant shares."""
    shared = {
        **config.train_settings,
        "data": config.data,
        "scores": config.scores or None,
        "model": config.model,
        "method": config.method,
        "seed": config.seed,
        "max_steps": config.max_steps,
        "eval_size": config.eval_size,
        "max_length": config.max_length,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "learning_rate": config.learning_rate,
        "beta": config.beta,
        "device": config.device,
        "dtype": config.dtype,
        "template": template,
        "eval_steps": config.max_steps,
        # Every step is logged, so that the training time sums every step's seconds.
        "logging_steps": 1,
    }
    shared.setdefault("save_steps", config.max_steps)
    return shared


def ablation_field_help() -> dict[str, str]:
    """Return each field's help text, for the CLI and the dashboard."""
    return {f.name: f.metadata["help"] for f in fields(AblationConfig)}


def ablation_field_types() -> dict[str, Any]:
    """Return each field's type with None removed: int, float, str, bool or dict."""
    resolved = {}
    for name, hint in typing.get_type_hints(AblationConfig).items():
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        resolved[name] = options[0]
    return resolved


def ablation_from_dict(values: dict[str, Any], base_folder: Path | None = None) -> AblationConfig:
    """Build an AblationConfig from a mapping; unknown keys and wrongly typed values raise DeftError."""
    converted, problems = convert_settings(values, ablation_field_types())
    if converted.get("train_settings") is None and "train_settings" in converted:
        converted["train_settings"] = {}
    if problems:
        raise DeftError("invalid ablation config: " + "; ".join(problems))
    if base_folder is not None:
        for name in PATH_FIELDS:
            if converted.get(name):
                converted[name] = resolve_path(converted[name], base_folder)
    return AblationConfig(**converted)


def load_ablation_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> AblationConfig:
    """Read a YAML ablation config (or start from the defaults) and apply overrides on top."""
    values, base_folder = read_config_file(path, "an ablation config")
    if not overrides:
        return ablation_from_dict(values, base_folder)
    # Resolve the file's paths against its folder first, then the overrides against the cwd.
    resolved = {**values}
    if base_folder is not None:
        for name in PATH_FIELDS:
            if values.get(name):
                resolved[name] = resolve_path(str(values[name]), base_folder)
    merged = {**resolved, **overrides}
    return ablation_from_dict(merged, Path.cwd())
