"""What a benchmark ran on, printed with its figures: the machine (CPU model, cores, memory, load while it ran), the
commit, and the versions of every library a figure depends on. Stdlib only, so it costs nothing inside a timing."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "bitsandbytes", "tiktoken", "bpe-openai")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load() -> str:
    """The 1-minute load average against the core count: above the cores, other work shared the machine."""
    try:
        one, _, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.1f} on {os.cpu_count()} CPUs"


def bf16_flags() -> str:
    """The CPU's native bfloat16 instructions (training precision follows them: server/hardware.py)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f", bf16 instructions: {' '.join(found) or 'none'}"


def machine() -> str:
    memory = memory_gb()
    ram = f", {memory:.0f} GB RAM" if memory else ""
    return (
        f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPUs{ram}{bf16_flags()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions(names: tuple[str, ...] = LIBRARIES) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


if __name__ == "__main__":  # bench/run's header
    print(f"machine: {machine()}")
    print(f"code: ftcli {commit()}")
    print(f"libraries: {versions()}")
    print(f"at the start: {load()}")
