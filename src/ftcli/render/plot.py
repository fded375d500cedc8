"""`status --plot loss.png`: the loss curve as a picture (matplotlib, an optional extra: `ftcli[plot]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_loss(points: Sequence[Any], output: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    train = [(p.step, p.train_loss) for p in points if p.train_loss is not None]
    valid = [(p.step, p.valid_loss) for p in points if p.valid_loss is not None]
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss")
    if valid:
        axes.plot(*zip(*valid, strict=True), label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
