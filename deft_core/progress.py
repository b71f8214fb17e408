"""One progress interface for long jobs: the CLI renders it with tqdm, the dashboard with st.progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long job: how much is done, how fast, and how long the rest should take."""

    stage: str
    done: float
    total: int
    unit: str = "pairs"
    tokens: int = 0
    elapsed_s: float = 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far; None before any unit is done."""
        if self.done <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


ProgressCallback = Callable[[Progress], None]


@dataclass
class ProgressTracker:
    """Builds timed Progress snapshots for one stage and sends them to an optional callback."""

    stage: str
    total: int
    callback: ProgressCallback | None = None
    unit: str = "pairs"
    done: float = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    def advance(self, units: float, tokens: int = 0) -> None:
        self.done += units
        self.tokens += tokens
        if self.callback is not None:
            self.callback(self.snapshot())

    def snapshot(self) -> Progress:
        return Progress(
            stage=self.stage,
            done=self.done,
            total=self.total,
            unit=self.unit,
            tokens=self.tokens,
            elapsed_s=time.perf_counter() - self.started,
        )


class ProgressBar:
    """Render Progress snapshots as tqdm bars on stderr, a new bar for each stage."""

    def __init__(self) -> None:
        self.bar = None
        self.stage = ""

    def __call__(self, progress: Progress) -> None:
        from tqdm import tqdm

        if self.bar is None or progress.stage != self.stage:
            self.close()
            self.stage = progress.stage
            self.bar = tqdm(total=progress.total, unit=progress.unit, desc=progress.stage, file=sys.stderr)
        self.bar.n = round(progress.done)
        if progress.tokens:
            self.bar.set_postfix_str(f"{progress.tokens_per_s:,.0f} tok/s", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
