"""`ftcli status` draws a reinforcement job's mean reward per step (from its metrics events), any other job's loss."""

from __future__ import annotations

from types import SimpleNamespace

from ftcli.render.jobs import progress_curve
from ftcli.service.results import loss_from_events


def _events(*data: dict[str, float]) -> list[SimpleNamespace]:
    return [SimpleNamespace(type="metrics", data=d) for d in data]


def test_a_reinforcement_jobs_curve_is_its_reward_and_another_jobs_its_loss() -> None:
    points = loss_from_events(
        _events(
            {"step": 2, "train_loss": 0.02, "train_reward_mean": 0.75, "train_reward_std": 0.4},
            {"step": 1, "train_loss": -0.01, "train_reward_mean": 0.25, "train_reward_std": 0.4},
        )
    )
    assert [p.train_reward_mean for p in points] == [0.25, 0.75]
    rft = SimpleNamespace(method=SimpleNamespace(type="reinforcement"))
    assert progress_curve(rft, points).plain == "reward ▁█  0.250 → 0.750"
    sft = SimpleNamespace(method=SimpleNamespace(type="supervised"))
    assert progress_curve(sft, points).plain == "loss ▁█  -0.010 → 0.020"
    assert progress_curve(rft, loss_from_events(_events({"step": 1, "train_loss": 1.0}))).plain == (
        "no reward reported yet"
    )
