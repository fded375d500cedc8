"""Statistics of graded answers: a model's mean score with a 95 % bootstrap interval, and wins, ties and losses
against another model on the same cases. Seeded, so a report is the same on every run."""

from __future__ import annotations

from dataclasses import dataclass

BOOTSTRAP_SAMPLES = 2000
TIE_MARGIN = 1e-9  # scores this close are a tie


@dataclass(frozen=True, slots=True)
class Summary:
    n: int  # cases the grader applied to
    mean: float | None
    low: float | None  # 95 % bootstrap interval of the mean
    high: float | None

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "mean": self.mean, "ci95": [self.low, self.high] if self.n else None}


@dataclass(frozen=True, slots=True)
class Comparison:
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict[str, int]:
        return {"wins": self.wins, "ties": self.ties, "losses": self.losses}


def summarise(scores: list[float | None], *, seed: int = 0) -> Summary:
    import numpy as np

    values = np.array([s for s in scores if s is not None], dtype=float)
    if values.size == 0:
        return Summary(0, None, None, None)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(BOOTSTRAP_SAMPLES, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Summary(int(values.size), round(float(values.mean()), 4), round(float(low), 4), round(float(high), 4))


def compare(scores: list[float | None], baseline: list[float | None]) -> Comparison:
    """Per case, this model's score against the baseline's (cases where either has none are left out)."""
    wins = ties = losses = 0
    for mine, theirs in zip(scores, baseline, strict=True):
        if mine is None or theirs is None:
            continue
        if abs(mine - theirs) <= TIE_MARGIN:
            ties += 1
        elif mine > theirs:
            wins += 1
        else:
            losses += 1
    return Comparison(wins, ties, losses)
