"""bench/train_speed.py's report: a baseline killed for memory before it finished still bounds the ratios (it needed
more memory than it held and more time than it had run), said as bounds, not as a measured ratio."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from tests.conftest import bench_module


@pytest.fixture(scope="module")
def train_speed() -> Any:
    yield from bench_module("train_speed")


def _ftcli_run() -> dict[str, Any]:
    return {"seconds": 60.0, "tokens_read": 1000, "target_tokens": 800, "precision": "bf16", "checkpointing": False,
            "steps": 1, "attention": "packed attention", "rss_mb": 1700.0}  # fmt: skip


def test_a_baseline_killed_for_memory_bounds_the_ratios(train_speed: Any) -> None:
    from proctree import Measured

    args = argparse.Namespace(model="tiny", examples=8, epochs=1, rounds=3, answers="long")
    killed = Measured(240.0, 23_000.0, 0.0, -9, b"")
    lines = train_speed.report(args, "ftcli/tiny", ["ftcli"], {"ftcli": [_ftcli_run()]}, "load 1", {"sft": killed})
    text = "\n".join(lines)
    assert "did not finish: killed (SIGKILL" in text and "at 22.5 GB" in text
    bound = next(line for line in lines if "killed before it finished" in line)
    # 1700 MB of 23000, 240 s over 60 s
    assert "at most 0.07 of its" in bound and "at least 4.00× as fast" in bound, bound
    assert "the baselines ?" not in text and "ftcli packed attention" in text
    assert not any(line.startswith("  speed ratio") for line in lines)  # no measured ratio without a finished run


def test_a_baseline_that_failed_otherwise_gives_no_bound(train_speed: Any) -> None:
    from proctree import Measured

    args = argparse.Namespace(model="tiny", examples=8, epochs=1, rounds=3, answers="long")
    crashed = Measured(5.0, 400.0, 0.0, 1, b"")
    lines = train_speed.report(args, "ftcli/tiny", ["ftcli"], {"ftcli": [_ftcli_run()]}, "load 1", {"sft": crashed})
    assert any("did not finish: exit code 1" in line for line in lines)
    assert not any("killed before it finished" in line for line in lines)
