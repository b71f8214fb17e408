"""Evaluate one model, the base model or a finished run, on held-out pairs or on typed prompts.

Per-model metrics (docs/compare.md states each definition in full):

    preference_accuracy  share of held-out pairs whose chosen response scores higher than the
                         rejected one: DPO implicit reward for a run, mean token log-prob for the base
    logprob_accuracy     the same share by mean token log-prob for every model, a like-for-like
                         comparison of the base model and the runs
    reward_mean          mean distribution reward of the generated outputs, computed by the base model
    bleu                 corpus BLEU of the outputs against the chosen responses
    perplexity           exp of the mean token NLL of the chosen responses
    length_mean          mean output length in generated tokens (words_mean: in words)
    finished_share       share of outputs that ended their turn within max_new_tokens
    reward_model_mean    mean score of an optional reward model
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deft_core.compare.candidates import Candidate, load_candidate
from deft_core.compare.generation import Generation, generate
from deft_core.compare.metrics import corpus_bleu, finite_mean, sentence_bleu, word_count
from deft_core.compare.passes import encode_outputs, make_scorer, output_rewards, pair_statistics, start_stage
from deft_core.compare.reward_model import load_reward_model, reward_model_scores
from deft_core.encoding import TEMPLATES, PairEncoder
from deft_core.errors import DeftError
from deft_core.pairs import Message, PreferencePair
from deft_core.progress import ProgressCallback

# Every per-model metric, in the order tables and reports list them.
METRICS = (
    "preference_accuracy",
    "logprob_accuracy",
    "reward_mean",
    "bleu",
    "perplexity",
    "length_mean",
    "words_mean",
    "finished_share",
    "reward_model_mean",
)


@dataclass
class GenerationSettings:
    """Settings of output generation. Invalid values raise DeftError listing every problem."""

    max_new_tokens: int = 128  # tokens generated at most per output
    do_sample: bool = False  # False: greedy decoding; True: sampling with temperature and top_p
    temperature: float = 1.0  # sampling only: logits are divided by it; must be > 0
    top_p: float = 1.0  # sampling only: nucleus mass kept, in (0, 1]
    seed: int = 0  # sampling only: seed of torch's generator, set before each model's outputs
    batch_size: int = 8  # prompts per generate call and sequences per scoring pass
    template: str = "auto"  # prompt rendering: auto (a run's training template), chat or raw

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if self.template not in TEMPLATES:
            problems.append(f"template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if problems:
            raise DeftError("invalid generation settings: " + "; ".join(problems))

    def describe(self) -> str:
        if not self.do_sample:
            return f"greedy, at most {self.max_new_tokens} new tokens"
        return (
            f"sampled (temperature {self.temperature:g}, top_p {self.top_p:g}, seed {self.seed}), "
            f"at most {self.max_new_tokens} new tokens"
        )


def json_number(value: Any) -> Any:
    """Return None for NaN and infinities, which JSON cannot hold; other values unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ModelEvaluation:
    """One model's metrics and its per-output rows, with the facts that identify the model."""

    label: str  # "base" or the run id
    metrics: dict[str, float]  # see the module docstring; NaN where a metric has no value
    outputs: list[dict]  # one row per prompt: prompt, output, reward, length, words, bleu, ...
    details: dict = field(default_factory=dict)  # model, adapter, template, settings, timing

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; NaN becomes null."""
        return {
            "label": self.label,
            "metrics": {name: json_number(value) for name, value in self.metrics.items()},
            "outputs": [{key: json_number(value) for key, value in row.items()} for row in self.outputs],
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEvaluation:
        metrics = {
            name: math.nan if value is None else float(value) for name, value in data["metrics"].items()
        }
        return cls(data["label"], metrics, list(data["outputs"]), dict(data.get("details", {})))


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - started, 2)


def limited(items: list, limit: int | None, description: str) -> list:
    if limit is not None and limit < 1:
        raise DeftError(f"limit must be at least 1, got {limit}")
    chosen = items[:limit] if limit is not None else list(items)
    if not chosen:
        raise DeftError(f"no {description} to evaluate")
    return chosen


def output_rows(
    prompts: list[list[Message]], generations: list[Generation], rewards: np.ndarray, pairs: list | None
) -> list[dict]:
    """Build the per-output rows; held-out pairs add their id, the chosen reference and sentence BLEU."""
    rows = []
    for index, (prompt, generation) in enumerate(zip(prompts, generations, strict=True)):
        row: dict[str, Any] = {
            "index": index,
            "prompt": PreferencePair("", prompt, "", "").prompt_text,
            "output": generation.text,
            "reward": float(rewards[index]),
            "length": len(generation.output_ids),
            "words": word_count(generation.text),
            "finished": generation.finished,
            "prompt_cut": generation.prompt_cut,
        }
        if pairs is not None:
            row["pair_id"] = pairs[index].id
            row["reference"] = pairs[index].chosen
            row["bleu"] = sentence_bleu(generation.text, pairs[index].chosen)
        rows.append(row)
    return rows


def output_metrics(rows: list[dict]) -> dict[str, float]:
    return {
        "reward_mean": finite_mean([r["reward"] for r in rows]),
        "length_mean": finite_mean([r["length"] for r in rows]),
        "words_mean": finite_mean([r["words"] for r in rows]),
        "finished_share": finite_mean([float(r["finished"]) for r in rows]),
    }


def add_reward_model(
    rows: list[dict],
    prompts: list[list[Message]],
    spec: str,
    device: str,
    dtype: str,
    settings: GenerationSettings,
    max_length: int,
    progress: ProgressCallback | None,
    label: str,
) -> float:
    """Score every output with the reward model, store it in the rows and return the mean."""
    tracker = start_stage(f"{label}: reward model", len(rows), progress, "outputs")
    model = load_reward_model(spec, device, dtype)
    scores = reward_model_scores(model, prompts, [r["output"] for r in rows], settings.batch_size, max_length)
    for row, score in zip(rows, scores, strict=True):
        row["reward_model"] = float(score)
    tracker.advance(len(rows))
    return finite_mean(scores)


def run_evaluation(
    candidate: Candidate,
    prompts: list[list[Message]],
    pairs: list[PreferencePair] | None,
    q_diff: np.ndarray,
    settings: GenerationSettings,
    options: dict[str, Any],
    progress: ProgressCallback | None,
) -> ModelEvaluation:
    """Generate, score and summarise for one loaded candidate; `pairs` is None for typed prompts."""
    seconds: dict[str, float] = {}
    max_length = options["max_length"]
    encoder = PairEncoder(candidate.tokenizer, candidate.template, max_length)
    scorer = make_scorer(candidate, q_diff)

    with timed(seconds, "generate"):
        tracker = start_stage(f"{candidate.label}: generating", len(prompts), progress, "prompts")
        generations = generate(candidate.model, encoder, prompts, settings, max_length, tracker)
    with timed(seconds, "score_outputs"):
        encoded_outputs = encode_outputs(encoder, prompts, [g.text for g in generations])
        rewards = output_rewards(candidate, scorer, encoded_outputs, settings.batch_size, progress)
    rows = output_rows(prompts, generations, rewards, pairs)
    metrics = output_metrics(rows)

    if pairs is not None:
        with timed(seconds, "score_pairs"):
            encoded = encoder.encode_many(pairs)
            statistics = pair_statistics(
                candidate, scorer, encoded, settings.batch_size, options["beta"], progress
            )
        metrics["preference_accuracy"] = statistics.preference_accuracy
        metrics["logprob_accuracy"] = statistics.logprob_accuracy
        metrics["perplexity"] = statistics.perplexity
        metrics["bleu"] = corpus_bleu([r["output"] for r in rows], [p.chosen for p in pairs])
        for row, chosen, rejected in zip(
            rows, statistics.chosen_scores, statistics.rejected_scores, strict=True
        ):
            row["prefers_chosen"] = bool(chosen > rejected)

    if options["reward_model"]:
        with timed(seconds, "reward_model"):
            metrics["reward_model_mean"] = add_reward_model(
                rows,
                prompts,
                options["reward_model"],
                options["device"],
                options["dtype"],
                settings,
                max_length,
                progress,
                candidate.label,
            )

    metrics = {name: metrics[name] for name in METRICS if name in metrics}
    details = {
        **candidate.describe(),
        "settings": asdict(settings),
        "beta": options["beta"],
        "max_length": max_length,
        "reward_model": options["reward_model"],
        "prompts": len(prompts),
        "prompts_cut": sum(1 for g in generations if g.prompt_cut),
        "seconds": seconds,
    }
    return ModelEvaluation(candidate.label, metrics, rows, details)


def evaluate_with(
    model_ref: str,
    work: Callable[[Candidate, dict[str, Any]], ModelEvaluation],
    settings: GenerationSettings,
    base_model: str,
    options: dict[str, Any],
) -> ModelEvaluation:
    """Load the candidate, run `work` on it, and add the load time to the evaluation's timing."""
    started = time.perf_counter()
    candidate = load_candidate(model_ref, base_model, options["device"], options["dtype"], settings.template)
    load_seconds = round(time.perf_counter() - started, 2)
    evaluation = work(candidate, options)
    evaluation.details["seconds"] = {"load": load_seconds, **evaluation.details["seconds"]}
    return evaluation


def evaluate_model(
    model_ref: str,
    held_out: list[PreferencePair],
    q_diff: np.ndarray,
    settings: GenerationSettings,
    *,
    base_model: str = "bundled",
    device: str = "auto",
    dtype: str = "auto",
    beta: float = 0.1,
    max_length: int = 512,
    reward_model: str | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> ModelEvaluation:
    """Evaluate "base" (the model `base_model`) or a finished run (id or folder) on held-out pairs.

    Generates one output per pair's prompt, then computes every metric of the module docstring on
    the first `limit` pairs (all when None). `q_diff` (Shape: (V,)) must match the model's
    vocabulary; deft_core.compare.comparison computes it as training did. Raises DeftError when
    the run did not finish, has no adapter, or there are no pairs.
    """
    pairs = limited(held_out, limit, "held-out pairs")
    if not (math.isfinite(beta) and beta > 0):
        raise DeftError(f"beta must be > 0, got {beta}")
    options = dict(
        device=device, dtype=dtype, beta=beta, max_length=max_length, reward_model=reward_model or None
    )

    def work(candidate: Candidate, options: dict[str, Any]) -> ModelEvaluation:
        return run_evaluation(
            candidate, [p.prompt for p in pairs], pairs, q_diff, settings, options, progress
        )

    return evaluate_with(model_ref, work, settings, base_model, options)


def evaluate_prompts(
    model_ref: str,
    prompts: list[list[Message]],
    q_diff: np.ndarray,
    settings: GenerationSettings,
    *,
    base_model: str = "bundled",
    device: str = "auto",
    dtype: str = "auto",
    max_length: int = 512,
    reward_model: str | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> ModelEvaluation:
    """Evaluate a model on typed prompts, which have no reference responses.

    Only the output metrics (reward_mean, length_mean, words_mean, finished_share) and
    reward_model_mean are computed; preference accuracy, BLEU and perplexity need held-out pairs.
    """
    chosen = limited(prompts, limit, "prompts")
    options = dict(
        device=device, dtype=dtype, beta=0.1, max_length=max_length, reward_model=reward_model or None
    )

    def work(candidate: Candidate, options: dict[str, Any]) -> ModelEvaluation:
        return run_evaluation(candidate, chosen, None, q_diff, settings, options, progress)

    return evaluate_with(model_ref, work, settings, base_model, options)
