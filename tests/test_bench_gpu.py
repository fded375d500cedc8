"""bench/gpu's CPU smoke run (issue 14): the script that measures real model shapes on a GPU must keep working where
CI has no GPU — a tiny shape, a few steps, every side that is installed (a smoke run, not a timing)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_the_gpu_benchmark_runs_its_cpu_smoke() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_train.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FAILED" not in done.stdout, done.stdout
    assert "tiny ftcli (LoRA):" in done.stdout and "trained tokens/s" in done.stdout
    if importlib.util.find_spec("trl") is not None:  # the bench extra: both sides, and their ratio
        assert "tiny trl (LoRA):" in done.stdout and "ftcli / TRL tokens/s" in done.stdout
    else:
        assert "TRL is not installed" in done.stdout
