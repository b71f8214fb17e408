"""The configuration of one training run: a typed dataclass, loaded from YAML and command-line flags.

This module imports no torch, so the CLI and the dashboard can build and check a config quickly.
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from deft_core.errors import DeftError

METHODS = ("dpo", "sft", "pro")
SELECTIONS = ("full", "top", "bottom", "random", "threshold")
SCHEDULERS = ("cosine", "linear", "constant")
TEMPLATES = ("auto", "chat", "raw")
PAIR_SCORES = ("margin", "chosen")
REWARD_FORMS = ("logprob", "prob")
# Fields that name files; relative paths in a YAML file are resolved against the file's folder.
PATH_FIELDS = ("data", "scores")

# Default guidance weight per base loss, chosen so that at step 0 the guidance gradient
# ||omega * grad s_theta|| is about a tenth of the base gradient ||grad L_base||: the base loss
# still leads, and the guidance is large enough to move the distribution reward. Measured with
# `python -m deft_core.training.calibrate HH_FILE 8 256` (deft_core/training/calibrate.py): the
# bundled SmolLM2-135M in bf16, a fresh LoRA r=8 adapter on q/k/v/o, 8 pairs spread over the
# HH-RLHF harmless-base test file, max_length 256, on a 2-core x86 CPU. Norms over the LoRA
# weights: grad s_theta 0.0185; grad L_base 0.712 (DPO), 0.696 (SFT), 0.940 (PRO), giving
# omega 3.86, 3.77 and 5.09, rounded below. Other models and data give other ratios.
DEFAULT_OMEGA = {"dpo": 4.0, "sft": 4.0, "pro": 5.0}


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """Declare a config field with its help text (shown by `deft train --help` and the dashboard)."""
    if callable(default) and not isinstance(default, (int, float, str)):
        return field(default_factory=default, metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Every setting of a guided LoRA training run. Invalid values raise DeftError listing them all."""

    # What to train on.
    data: str = option("sample", "training data: a pairs file, a Hugging Face dataset id, or 'sample'")
    # option() builds a default_factory field for these mutable defaults, so RUF009 does not apply.
    columns: dict = option(  # noqa: RUF009
        dict,
        "map input columns onto prompt/chosen/rejected: in YAML {prompt: question}; as a flag "
        'prompt=question,chosen=good or JSON {"prompt": "question"}',
    )
    limit: int | None = option(None, "read at most this many pairs of the data (before any split)")
    eval_size: int = option(
        32, "pairs held out for evaluation, drawn at random (seed) before any selection; 0 for none"
    )
    selection: str = option(
        "full",
        "training pairs from the rest: full, top/bottom P% by DEFT score, random P%, or threshold "
        "(score >= value)",
        choices=SELECTIONS,
    )
    selection_value: float = option(100.0, "percentage for top/bottom/random, minimum score for threshold")
    scores: str | None = option(
        None, "score file from `deft score` on the same data; required by top, bottom and threshold"
    )

    # The model and how sequences are built.
    model: str = option(
        "bundled", "'bundled' (SmolLM2-135M-Instruct), a Hub id, a model folder or a .gguf file"
    )
    template: str = option(
        "auto",
        "prompt rendering: chat, raw, or auto (the score file's template, else chat when available)",
        choices=TEMPLATES,
    )
    max_length: int = option(512, "maximum tokens of prompt + response; cut pairs are counted and reported")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    dtype: str = option("auto", "model weights: auto (bf16 where supported), float32, bfloat16, float16")

    # The loss.
    method: str = option("dpo", "base loss: dpo, sft or pro", choices=METHODS)
    omega: float | None = option(
        None,
        "guidance weight in L_base - omega * s_theta; 0 trains the plain method; empty: "
        "the measured default for the method",
    )
    pair_score: str = option(
        "margin", "s_theta = r(chosen) - r(rejected) (margin) or r(chosen)", choices=PAIR_SCORES
    )
    reward_form: str = option(
        "logprob",
        "r = mean over tokens of Q_diff . log p (logprob) or Q_diff . p (prob)",
        choices=REWARD_FORMS,
    )
    beta: float = option(0.1, "DPO: scale of the implicit reward beta * log(pi / pi_ref)")
    lambda_sft: float = option(1.0, "PRO: weight of the chosen response's NLL term")

    # LoRA.
    lora_r: int = option(8, "LoRA rank")
    lora_alpha: int = option(16, "LoRA alpha; the update is scaled by alpha / r")
    lora_dropout: float = option(0.05, "dropout on the LoRA input, in [0, 1)")
    target_modules: list = option(  # noqa: RUF009
        lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        "module names that get LoRA adapters, or ['all-linear']",
    )

    # Optimisation.
    learning_rate: float = option(2e-4, "peak learning rate of AdamW")
    weight_decay: float = option(0.0, "AdamW weight decay")
    scheduler: str = option(
        "cosine", "learning-rate decay after warmup: cosine, linear or constant", choices=SCHEDULERS
    )
    warmup_ratio: float = option(0.1, "fraction of the optimizer steps spent warming up linearly, in [0, 1)")
    epochs: float = option(1.0, "passes over the training pairs; max_steps overrides it when set")
    max_steps: int | None = option(None, "optimizer steps to run; empty: derived from epochs")
    batch_size: int = option(2, "pairs per forward pass (micro-batch)")
    grad_accum: int = option(2, "micro-batches per optimizer step")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this value; 0 disables clipping")
    seed: int = option(0, "seed of the held-out split, random selection, data order, dropout and LoRA init")

    # Reporting and outputs.
    logging_steps: int = option(1, "write train metrics every this many optimizer steps")
    eval_steps: int = option(
        10, "evaluate on the held-out pairs every this many steps (and at start and end)"
    )
    save_steps: int = option(10, "save a resumable checkpoint every this many steps")
    export_merged: bool = option(
        False, "also save the base model with the adapter merged, in transformers format"
    )
    name: str = option("", "short label added to the run id")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise DeftError("invalid training config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Return every invalid value as a readable sentence; empty when the config is valid."""
        problems = [
            f"{f.name} must be one of {', '.join(f.metadata['choices'])}, got {getattr(self, f.name)!r}"
            for f in fields(self)
            if "choices" in f.metadata and getattr(self, f.name) not in f.metadata["choices"]
        ]
        positive_ints = (
            "lora_r",
            "lora_alpha",
            "batch_size",
            "grad_accum",
            "logging_steps",
            "eval_steps",
            "save_steps",
        )
        problems += [
            f"{name} must be at least 1, got {getattr(self, name)}"
            for name in positive_ints
            if getattr(self, name) < 1
        ]
        if self.max_length < 16:
            problems.append(f"max_length must be at least 16, got {self.max_length}")
        if self.eval_size < 0:
            problems.append(f"eval_size must be >= 0, got {self.eval_size}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be at least 1, got {self.limit}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            problems.append(f"epochs must be > 0 when max_steps is not set, got {self.epochs}")
        if self.selection in ("top", "bottom", "random") and not 0 < self.selection_value <= 100:
            problems.append(
                f"selection_value must be a percentage in (0, 100] for {self.selection}, "
                f"got {self.selection_value}"
            )
        if self.selection in ("top", "bottom", "threshold") and not self.scores:
            problems.append(
                f"selection {self.selection} needs a score file: set scores (create one with "
                f"`deft score DATA --out FILE.parquet`)"
            )
        problems += self.number_problems()
        return problems

    def number_problems(self) -> list[str]:
        problems = []
        for name in ("beta", "learning_rate"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_sft", "weight_decay", "max_grad_norm"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.omega is not None and not (math.isfinite(self.omega) and self.omega >= 0):
            problems.append(f"omega must be a finite number >= 0, got {self.omega}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.target_modules or not all(isinstance(m, str) for m in self.target_modules):
            problems.append(
                f"target_modules must be a non-empty list of module names, got {self.target_modules!r}"
            )
        return problems

    def missing_files(self) -> list[str]:
        """Return problems with input files that must exist before a run starts."""
        if self.scores and not Path(self.scores).is_file():
            return [
                f"score file not found: {self.scores}; create it with "
                f"`deft score {self.data} --out {self.scores}`"
            ]
        return []

    @property
    def guidance_weight(self) -> float:
        """Return omega, or the measured default of the method when omega is not set."""
        return DEFAULT_OMEGA[self.method] if self.omega is None else self.omega

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def field_help() -> dict[str, str]:
    """Return each field's help text, for the CLI and the dashboard."""
    return {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def field_types() -> dict[str, Any]:
    """Return each field's type with None removed: int, float, str, bool, list or dict."""
    hints = typing.get_type_hints(TrainConfig)
    resolved = {}
    for name, hint in hints.items():
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        resolved[name] = options[0]
    return resolved


def field_defaults() -> dict[str, Any]:
    return {f.name: (f.default_factory() if f.default is MISSING else f.default) for f in fields(TrainConfig)}


# The words type errors use for each field type.
TYPE_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "text",
    bool: "true or false",
    list: "a list (A,B or a YAML list)",
    dict: "a mapping",
}


def convert_settings(values: dict[str, Any], known: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert each setting to its field's type; return (converted, problems).

    An unknown setting is reported with the closest known names, a wrongly typed one with the
    type it needs.
    """
    problems = []
    for name in sorted(set(values) - set(known)):
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"allowed: {', '.join(known)}"
        problems.append(f"unknown setting {name}; {hint}")
    converted = {}
    for name, value in values.items():
        if name not in known:
            continue
        try:
            converted[name] = coerce(value, known[name])
        except (TypeError, ValueError):
            needed = TYPE_NAMES.get(known[name], known[name].__name__)
            problems.append(f"{name} must be {needed}, got {value!r}")
    return converted, problems


def config_from_dict(values: dict[str, Any], base_folder: Path | None = None) -> TrainConfig:
    """Build a TrainConfig from a mapping; unknown keys and wrongly typed values raise DeftError."""
    converted, problems = convert_settings(values, field_types())
    if problems:
        raise DeftError("invalid training config: " + "; ".join(problems))
    if base_folder is not None:
        for name in PATH_FIELDS:
            converted[name] = resolve_path(converted.get(name), base_folder)
    return TrainConfig(**converted)


def coerce(value: Any, kind: Any) -> Any:
    """Convert a YAML or command-line value to a field's type; None stays None."""
    if value is None or value == "":
        return None if kind is not str else ""
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is list and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if kind in (list, dict) and not isinstance(value, kind):
        raise TypeError(value)
    return kind(value)


def resolve_path(value: str | None, base_folder: Path) -> str | None:
    """Resolve a relative file path against base_folder; leave 'sample', Hub ids and missing files alone."""
    if not value or value == "sample" or Path(value).is_absolute():
        return value
    candidate = (base_folder / value).resolve()
    return str(candidate) if candidate.exists() or value.startswith(".") else value


def yaml_error_message(path: Path, error: yaml.YAMLError) -> str:
    """Describe a YAML syntax error in one line, with the file, line and column where it was found."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: invalid YAML: {problem}"


def read_config_file(path: str | Path | None, kind: str) -> tuple[dict[str, Any], Path | None]:
    """Read a YAML config file of settings; return (settings, the file's folder).

    With no path, return no settings and no folder. `kind` names the config in messages
    ("a training config").
    """
    if path is None:
        return {}, None
    path = Path(path)
    if not path.is_file():
        raise DeftError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DeftError(yaml_error_message(path, error)) from error
    if loaded is not None and not isinstance(loaded, dict):
        raise DeftError(f"{path}: {kind} must be a YAML mapping of settings, got {type(loaded).__name__}")
    return loaded or {}, path.resolve().parent


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config file (or start from the defaults) and apply overrides on top."""
    values, base_folder = read_config_file(path, "a training config")
    config = config_from_dict(values, base_folder)
    if overrides:
        merged = {**config.to_dict(), **overrides}
        config = config_from_dict(merged, Path.cwd())
    return config
