"""bench/proctree.py, how every benchmark measures a command: the kernel's high-water mark for one process (exact,
and nothing samples while the command is timed), the sampled sum over a process tree for commands of several."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import bench_module

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

ALLOCATE = "import sys, time; block = b'x' * (int(sys.argv[1]) << 20); time.sleep(0.3); del block; print('done')"
SPAWN = (
    "import subprocess, sys; "
    "subprocess.run([sys.executable, '-c', "
    "'import time; block = b\"x\" * (150 << 20); time.sleep(2.5)'], check=True); print('done')"
)


@pytest.fixture(scope="module")
def proctree() -> Any:
    yield from bench_module("proctree")


def test_the_high_water_mark_is_the_peak_of_memory_freed_before_the_end(proctree: Any) -> None:
    small = proctree.measure([sys.executable, "-c", ALLOCATE, "1"])
    large = proctree.measure([sys.executable, "-c", ALLOCATE, "300"])
    assert small.returncode == large.returncode == 0 and large.stdout.strip() == b"done"
    # freed before it ended, still its peak (the blocks are written: untouched pages aren't resident)
    assert large.peak_rss_mb - small.peak_rss_mb > 250
    assert small.peak_rss_mb < 60  # its own peak, not this (larger) process's that started it
    assert large.seconds >= 0.3


def test_a_killed_command_reports_its_signal_and_its_peak(proctree: Any) -> None:
    killed = proctree.measure(
        [sys.executable, "-c", "import os, time; block = b'x' * (120 << 20); time.sleep(0.3); os.kill(os.getpid(), 9)"]
    )
    assert killed.returncode == -9 and killed.peak_rss_mb > 100


def test_a_command_that_starts_another_process_is_measured_sampled_not_by_its_high_water(proctree: Any) -> None:
    with pytest.raises(SystemExit, match="started other processes"):
        proctree.measure([sys.executable, "-c", SPAWN])
    sampled = proctree.measure([sys.executable, "-c", SPAWN], memory="sampled")
    assert sampled.returncode == 0 and sampled.peak_rss_mb > 150 and sampled.peak_pss_mb > 0  # the child's block
