"""Run a command and measure its time and peak memory (Linux), as benchmarks report them.

- `high-water` (the default): the kernel's own peak RSS of the process (`wait4`'s ru_maxrss once it ends, or the
  VmHWM counter of /proc/<pid>/status read every 0.1 s where ru_maxrss can't tell: see `_high_water`). Nothing
  walks the process's memory while it runs, so the timing is the command's alone: summing smaps every 20 ms took
  ~45 % of a CPU on this 2-core machine, and its walks of the mappings held off the trained process's own mmap and
  munmap calls (a training run took 63 s measured that way, 36 s alone). For commands of one process: one that
  starts another (checked every second) is refused, to be measured `sampled`.
- `sampled`: the sum over the whole process tree every 20 ms, RSS and PSS (for multi-process commands: RSS counts
  pages shared between processes, e.g. forked workers sharing the parent's tokenizer, once per process; PSS splits
  each shared page between the processes that map it, so the PSS sum is the memory the tree really uses).
- `none`: the time only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float  # the process's peak (high-water), or the tree's summed peak (sampled); 0 with `none`
    peak_pss_mb: float  # sampled only
    returncode: int
    stdout: bytes


Memory = Literal["high-water", "sampled", "none"]


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


def measure(command: list[str], *, memory: Memory = "high-water", interval: float = 0.02) -> Measured:
    if memory == "none":
        start = time.perf_counter()
        finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        return Measured(time.perf_counter() - start, 0.0, 0.0, finished.returncode, finished.stdout)
    if memory == "high-water":
        return _high_water(command)
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


def _high_water(command: list[str]) -> Measured:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    done, spawned = threading.Event(), threading.Event()
    seen = [0]  # the highest VmHWM read, kB
    before = [False]  # whether the last look found another process

    def watch() -> None:  # counters only (no walk of the mappings); a second process, which the peak would miss
        polls = 0
        while not done.wait(0.1):
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                seen[0] = max(seen[0], int(status.split("VmHWM:")[1].split()[0]))
            polls += 1
            if polls % 10 == 0:  # twice in a row: a helper that comes and goes (ldconfig, a compiler) is not one
                others = len(_tree(process.pid)) > 1
                if others and before[0]:
                    spawned.set()
                before[0] = others

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert process.stdout is not None
    stdout = process.stdout.read()  # to the end: the command has exited or closed its output
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if spawned.is_set():
        raise SystemExit(f"{command[:3]} started other processes: measure it with memory='sampled'")
    # A child's ru_maxrss is at least its parent's peak when it was started (Linux counts the parent's memory
    # until the exec): above this process's own peak it is the child's exact peak, else the highest VmHWM read
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kb = usage.ru_maxrss if usage.ru_maxrss > own else seen[0]
    return Measured(seconds, peak_kb / 1024, 0.0, process.returncode, stdout)
