"""What training tells whoever runs it: one reporter instead of a callback per kind of news (torchtune's
MetricLoggerInterface is the model). The worker's reporter writes a job's events and checkpoints to the store
(server/worker.py); tests and benchmarks keep what they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Rewards:
    """The grader's rewards of a step's sampled answers (reinforcement training): their mean and spread (population
    standard deviation), and how many answers were graded."""

    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, rewards: list[float]) -> Rewards:
        mean = sum(rewards) / len(rewards)
        return cls(mean, (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5, len(rewards))


@dataclass(frozen=True, slots=True)
class StepMetrics:
    step: int
    total_steps: int
    epoch: int
    train_loss: float
    train_mean_token_accuracy: float | None  # None: reinforcement training has no target tokens to match
    valid_loss: float | None = None
    train_rewards: Rewards | None = None  # reinforcement: the step's training answers' rewards
    valid_rewards: Rewards | None = None  # reinforcement: the validation answers' rewards (every eval_interval steps)


class TrainingReporter(Protocol):
    """Told by `train_lora` on the main process, except `should_stop` (asked of every process after each step)."""

    def step(self, metrics: StepMetrics) -> None:
        """After each optimizer step (the loss and accuracy reduced over the job's processes)."""

    def epoch_end(self, metrics: StepMetrics) -> None:
        """An epoch's last step's metrics with its validation loss (None without a validation file), before its
        checkpoint is saved."""

    def checkpoint_saved(self, epoch: int, path: Path, metrics: StepMetrics) -> None:
        """The epoch's adapter is complete on disk at `path`."""

    def warning(self, message: str) -> None:
        """Something the user should change (truncated examples, a setting that can't apply)."""

    def info(self, message: str) -> None:
        """A note on how the job trains (how FSDP sharded it)."""

    def error(self, message: str) -> None:
        """Something failed and training goes on without it (a grader that failed on some answers: reward 0)."""

    def should_stop(self) -> bool:
        """True to end training after this step (no final adapter is saved)."""


class Silent:
    """Hears everything, says nothing: `train_lora`'s default, and the base of a reporter that needs only a few."""

    def step(self, metrics: StepMetrics) -> None:
        pass

    def epoch_end(self, metrics: StepMetrics) -> None:
        pass

    def checkpoint_saved(self, epoch: int, path: Path, metrics: StepMetrics) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False
