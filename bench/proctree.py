"""Run a command and sample the memory of its whole process tree (Linux /proc), as benchmarks report it.

RSS counts pages shared between processes (forked workers share the parent's tokenizer) once per process;
PSS splits each shared page between the processes that map it, so the PSS sum is the memory the tree really uses.
Both peaks are reported.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float  # sum over the tree, at its peak
    peak_pss_mb: float
    returncode: int
    stdout: bytes


def _tree(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                stack += [int(c) for c in (task / "children").read_text().split()]
    return found


def _memory(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def measure(command: list[str], *, interval: float = 0.02, sample_memory: bool = True) -> Measured:
    """`sample_memory=False` for timings: reading /proc every 20 ms costs CPU that multi-process commands
    would otherwise use (peaks are then 0)."""
    if not sample_memory:
        start = time.perf_counter()
        finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        return Measured(time.perf_counter() - start, 0.0, 0.0, finished.returncode, finished.stdout)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _memory(_tree(process.pid))
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], pss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return Measured(seconds, peaks[0] / 1024, peaks[1] / 1024, process.returncode, stdout)
