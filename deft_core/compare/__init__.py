"""Compare the base model and finished training runs: generation, metrics, comparisons and reports.

evaluate_model evaluates one model; compare_models evaluates several on the same prompts and
save_comparison stores the result with the first run. The metric definitions are in
deft_core.compare.metrics and docs/compare.md.

The names below are imported on first use, so that `deft --help`, which imports
deft_core.compare.command, does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deft_core.compare.comparison import (
        CompareRequest,
        Comparison,
        compare_models,
        load_comparison,
        save_comparison,
    )
    from deft_core.compare.evaluate import (
        METRICS,
        GenerationSettings,
        ModelEvaluation,
        evaluate_model,
        evaluate_prompts,
    )

EXPORTS = {
    "CompareRequest": "comparison",
    "Comparison": "comparison",
    "compare_models": "comparison",
    "load_comparison": "comparison",
    "save_comparison": "comparison",
    "METRICS": "evaluate",
    "GenerationSettings": "evaluate",
    "ModelEvaluation": "evaluate",
    "evaluate_model": "evaluate",
    "evaluate_prompts": "evaluate",
}

__all__ = [
    "METRICS",
    "CompareRequest",
    "Comparison",
    "GenerationSettings",
    "ModelEvaluation",
    "compare_models",
    "evaluate_model",
    "evaluate_prompts",
    "load_comparison",
    "save_comparison",
]


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
