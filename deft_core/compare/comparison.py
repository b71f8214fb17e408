"""Compare the base model and finished runs on the same prompts, and save the result with the first run.

The prompts are the held-out split of the first run's data, rebuilt with load_split (seeded, so it
is the split the run held out), or prompts the user typed. Q_diff is computed as training computed
its guidance distributions: over every non-held-out pair of the first run's data.

Results go to `<first run>/compare/<timestamp>/results.json`, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from deft_core.compare.candidates import BASE, finished_adapter, run_template
from deft_core.compare.evaluate import GenerationSettings, ModelEvaluation, evaluate_model, evaluate_prompts
from deft_core.compare.reward_model import load_reward_model
from deft_core.encoding import PairEncoder
from deft_core.errors import DeftError
from deft_core.models import load_tokenizer, model_vocab_size
from deft_core.pairs import PreferencePair
from deft_core.progress import ProgressCallback
from deft_core.sources import atomic_path
from deft_core.training.data import SplitData, guidance_distributions, load_split
from deft_core.training.runs import RunDir, open_run

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclass
class CompareRequest:
    """A comparison request: runs, prompts and settings. The dashboard caches results by its key."""

    runs: list[str]  # run ids or folders; the first one supplies the data, Q_diff and base model
    include_base: bool = True  # also evaluate the runs' base model without an adapter
    prompts: list[str] | None = None  # typed prompts (one user turn each); None: the held-out split
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    limit: int | None = None  # evaluate at most this many prompts
    reward_model: str | None = None  # sequence-classification model id or folder
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if not self.runs:
            problems.append("name at least one run to compare")
        if len(set(self.runs)) != len(self.runs):
            problems.append(f"a run is named twice: {', '.join(self.runs)}")
        if self.prompts is not None and not [p for p in self.prompts if p.strip()]:
            problems.append("the prompt list is empty; type at least one prompt")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be at least 1, got {self.limit}")
        if problems:
            raise DeftError("; ".join(problems))
        if self.prompts is not None:
            self.prompts = [p.strip() for p in self.prompts if p.strip()]
        self.reward_model = (self.reward_model or "").strip() or None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Return a short hash of the request, with run ids resolved to their folders."""
        resolved = {**self.to_dict(), "runs": [str(open_run(r).path.resolve()) for r in self.runs]}
        text = json.dumps(resolved, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Comparison:
    """The evaluations of several models on the same prompts, and how they were made."""

    evaluations: list[ModelEvaluation]
    meta: dict[str, Any]  # request, runs, data, held-out ids, warnings, created_at

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.evaluations]

    @property
    def warnings(self) -> list[str]:
        return list(self.meta.get("warnings", []))

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "evaluations": [e.to_dict() for e in self.evaluations]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls([ModelEvaluation.from_dict(e) for e in data["evaluations"]], dict(data["meta"]))


@dataclass
class ComparisonData:
    """The prompts' source and Q_diff, built from the first run."""

    split: SplitData
    q_diff: np.ndarray
    template: str
    info: dict[str, Any]


def comparison_data(first: RunDir) -> ComparisonData:
    """Rebuild the first run's held-out split and Q_diff over its non-held-out pairs."""
    config = first.config()
    split = load_split(config)
    tokenizer = load_tokenizer(config.model)
    template = run_template(first, tokenizer)
    encoder = PairEncoder(tokenizer, template, config.max_length)
    alpha = float(split.score_meta["options"]["alpha"]) if split.score_meta else 0.0
    distributions = guidance_distributions(encoder, split.pool, model_vocab_size(config.model), alpha)
    info = {
        "data": config.data,
        "eval_size": config.eval_size,
        "seed": config.seed,
        "held_out": len(split.eval),
        "q_diff_pairs": len(split.pool),
        "alpha": alpha,
        "template": template,
        "max_length": config.max_length,
    }
    return ComparisonData(split, distributions.q_diff, template, info)


def split_warnings(first: RunDir, runs: list[RunDir], held_out: list[PreferencePair]) -> list[str]:
    """Report held-out pairs that another run trained on, and a split that no longer matches its run."""
    warnings = []
    summary = first.summary() or {}
    recorded = (summary.get("data") or {}).get("eval_pairs")
    if recorded is not None and recorded != len(held_out):
        warnings.append(
            f"run {first.run_id} held out {recorded} pairs but its data now gives {len(held_out)}: "
            "the data file changed since training, so some prompts may have been trained on"
        )
    held_ids = {p.id for p in held_out}
    for run in runs[1:]:
        try:
            trained = {p.id for p in load_split(run.config()).train}
        except DeftError as error:
            warnings.append(f"could not check which pairs run {run.run_id} trained on: {error}")
            continue
        overlap = len(held_ids & trained)
        if overlap:
            warnings.append(
                f"run {run.run_id} trained on {overlap} of the {len(held_ids)} held-out pairs of "
                f"{first.run_id}; its metrics on them are not held-out results"
            )
    return warnings


def check_runs(runs: list[RunDir]) -> str:
    """Check that every run finished with an adapter over one base model; return that model."""
    for run in runs:
        finished_adapter(run)
    models = {run.run_id: run.config().model for run in runs}
    if len(set(models.values())) > 1:
        listed = ", ".join(f"{run_id}: {model}" for run_id, model in models.items())
        raise DeftError(f"the runs have different base models ({listed}); compare runs of one base model")
    return models[runs[0].run_id]


def compare_models(request: CompareRequest, progress: ProgressCallback | None = None) -> Comparison:
    """Evaluate the base model (unless excluded) and every run on the same prompts."""
    runs = [open_run(r) for r in request.runs]
    base_model = check_runs(runs)
    first = runs[0]
    data = comparison_data(first)
    config = first.config()
    warnings = [] if request.prompts is not None else split_warnings(first, runs, data.split.eval)
    for warning in warnings:
        logger.warning("%s", warning)
    if request.prompts is None and not data.split.eval:
        raise DeftError(
            f"run {first.run_id} has no held-out pairs (eval_size {config.eval_size}); "
            "compare on typed prompts instead"
        )

    if request.reward_model:
        # Load it before generating, so that a wrong id fails at once. The evaluations reuse this model.
        load_reward_model(request.reward_model, request.device, request.dtype)

    refs = ([BASE] if request.include_base else []) + [str(run.path) for run in runs]
    evaluations = []
    for ref in refs:
        # The base model renders prompts with the first run's template, so it gets the runs' prompt tokens.
        settings = request.settings
        if ref == BASE and settings.template == "auto":
            settings = replace(settings, template=data.template)
        common = dict(
            base_model=base_model,
            device=request.device,
            dtype=request.dtype,
            max_length=config.max_length,
            reward_model=request.reward_model,
            limit=request.limit,
            progress=progress,
        )
        if request.prompts is None:
            evaluation = evaluate_model(
                ref, data.split.eval, data.q_diff, settings, beta=config.beta, **common
            )
        else:
            prompts = [[{"role": "user", "content": text}] for text in request.prompts]
            evaluation = evaluate_prompts(ref, prompts, data.q_diff, settings, **common)
        evaluations.append(evaluation)

    held_out = data.split.eval[: request.limit] if request.prompts is None else []
    meta = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": request.to_dict(),
        "request_key": request.key(),
        "runs": {run.run_id: str(run.path) for run in runs},
        "base_model": base_model,
        "prompt_source": "typed" if request.prompts is not None else f"held-out split of {first.run_id}",
        "data": data.info,
        "held_out_ids": [p.id for p in held_out],
        "warnings": warnings,
    }
    return Comparison(evaluations, meta)


def new_results_folder(run: RunDir) -> Path:
    """Make `<run>/compare/<timestamp>/`, with a numeric suffix when that name exists."""
    root = run.path / "compare"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, suffix = root / stamp, 2
    while folder.exists():
        folder, suffix = root / f"{stamp}-{suffix}", suffix + 1
    folder.mkdir(parents=True)
    return folder


def save_comparison(comparison: Comparison, folder: Path | None = None) -> Path:
    """Write results.json atomically into `folder`, by default a new folder in the first run.

    Returns the path of results.json.
    """
    if folder is None:
        first = open_run(next(iter(comparison.meta["runs"].values())))
        folder = new_results_folder(first)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS_FILE
    with atomic_path(path) as temporary:
        text = json.dumps(comparison.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        temporary.write_text(text, encoding="utf-8")
    logger.info("saved the comparison to %s", path)
    return path


def load_comparison(path: str | Path) -> Comparison:
    """Read a results.json written by save_comparison."""
    path = Path(path)
    try:
        return Comparison.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as error:
        raise DeftError(f"comparison results not found: {path}") from error
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DeftError(f"{path}: not a deft comparison results file ({error})") from error


def saved_comparisons(run: RunDir) -> list[Path]:
    """Return the results files saved in a run's compare folder, newest first."""
    return sorted((run.path / "compare").glob(f"*/{RESULTS_FILE}"), reverse=True)


def read_prompts_file(path: str | Path) -> list[str]:
    """Read typed prompts: one per non-empty line.

    A .jsonl file contains one JSON string or {"prompt": ...} object per line, for multi-line prompts.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as error:
        raise DeftError(f"prompts file not found: {path}") from error
    except (UnicodeDecodeError, IsADirectoryError) as error:
        raise DeftError(f"{path}: cannot read it as UTF-8 text ({error})") from error
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            prompts.append(json_prompt(path, number, line))
        else:
            prompts.append(line.strip())
    if not prompts:
        raise DeftError(f"{path}: no prompts found; write one prompt per line")
    return prompts


def json_prompt(path: Path, number: int, line: str) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise DeftError(f"{path}:{number}: invalid JSON: {error.msg}") from error
    if isinstance(value, dict):
        value = value.get("prompt")
    if not isinstance(value, str) or not value.strip():
        raise DeftError(f'{path}:{number}: expected a JSON string or an object with a "prompt" string')
    return value.strip()
