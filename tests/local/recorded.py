"""A training reporter that keeps what it is told, for tests that train."""

from __future__ import annotations

from pathlib import Path

from ftcli.server.reporting import Silent, StepMetrics


class Recorded(Silent):
    def __init__(self) -> None:
        self.steps: list[StepMetrics] = []
        self.epochs: list[StepMetrics] = []
        self.checkpoints: list[tuple[int, Path]] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []

    @property
    def losses(self) -> list[float]:
        return [m.train_loss for m in self.steps]

    def step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics)

    def epoch_end(self, metrics: StepMetrics) -> None:
        self.epochs.append(metrics)

    def checkpoint_saved(self, epoch: int, path: Path, metrics: StepMetrics) -> None:
        self.checkpoints.append((epoch, path))

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None:
        self.infos.append(message)
