"""Benchmark `ftcli check` against the cookbook algorithm on generated data; prints ratios from one run.

Targets (issue 2): on a 100 MB chat JSONL, check takes ≤ 1/3 of the cookbook algorithm's time (same encoding,
same run), peak memory ≤ 150 MB, and a 1 GB file stays within 1.2× the 100 MB peak.

    .venv/bin/python bench/check_speed.py [--skip-1gb] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import datagen  # noqa: E402
from proctree import Measured, Memory, measure  # noqa: E402

WORK = Path(__file__).parent / "_work"
BIN = Path(sys.executable).parent


def dataset(size_mb: int) -> Path:
    path = WORK / f"chat_{size_mb}mb.jsonl"
    if not path.exists() or path.stat().st_size < size_mb * 1_000_000:
        WORK.mkdir(exist_ok=True)
        datagen.generate(path, size_mb * 1_000_000)
    return path


def run_check(path: Path, *extra: str, memory: Memory = "none") -> Measured:
    command = [str(BIN / "ftcli"), "check", str(path), "--model", "gpt-4o-mini", "--format", "json", *extra]
    result = measure(command, memory=memory)
    json.loads(result.stdout)  # a complete report came out
    return result


def run_cookbook(path: Path, *, memory: Memory = "none") -> Measured:
    command = [sys.executable, str(Path(__file__).parent / "cookbook.py"), str(path), "o200k_base"]
    return measure(command, memory=memory)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


TOKENIZE_ONLY = """
import json, sys, time
from ftcli.data.tokenizers import get_counting_encoding
count = get_counting_encoding("o200k_base", sys.argv[2]).count
texts = []
with open(sys.argv[1], encoding="utf-8") as stream:
    for line in stream:
        for message in json.loads(line).get("messages", []):
            if isinstance(message.get("content"), str):
                texts.append(message["content"])
start = time.perf_counter()
tokens = sum(count(text) for text in texts)
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": tokens}))
"""


def tokenization_limit(path: Path, engine: str) -> float:
    """Seconds one process needs only to count the tokens of the file's message texts (parsing excluded): the
    floor a one-process checker using that counter can't go under."""
    result = measure([sys.executable, "-c", TOKENIZE_ONLY, str(path), engine], memory="none")
    return float(json.loads(result.stdout)["seconds"])


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-1gb", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    small = dataset(100)
    # This VM's speed drifts by ±20 % over minutes: alternate the two and compare medians.
    cookbooks, checks = [], []
    for _ in range(args.rounds):
        cookbooks.append(run_cookbook(small))
        checks.append(run_check(small))
    cookbook_s, check_s = median([m.seconds for m in cookbooks]), median([m.seconds for m in checks])
    reference = run_check(small, "--counter", "tiktoken")
    memory = run_check(small, memory="sampled")
    cookbook_memory = run_cookbook(small, memory="sampled")
    report, reference_report = json.loads(checks[0].stdout), json.loads(reference.stdout)
    engine = report["counted_with"]
    limits = {name: tokenization_limit(small, name) for name in (engine, "tiktoken")}
    tokens = report["statistics"]["tokens_per_example"]["total"]
    cookbook_tokens = json.loads(cookbooks[0].stdout)["tokens"]
    reference_tokens = reference_report["statistics"]["tokens_per_example"]["total"]
    if not tokens == reference_tokens == cookbook_tokens:
        totals = f"{engine} {tokens}, tiktoken {reference_tokens}, cookbook {cookbook_tokens}"
        raise SystemExit(f"token totals differ: {totals}")
    each = ", ".join(f"{c.seconds:.1f}/{k.seconds:.1f}" for c, k in zip(cookbooks, checks, strict=True))
    lines += [
        f"100 MB file: {report['examples']:,} examples, {tokens:,} tokens (the same with either counter and in "
        "the cookbook)",
        f"  cookbook algorithm: {cookbook_s:.2f} s, peak RSS {cookbook_memory.peak_rss_mb:.0f} MB",
        f"  ftcli check:        {check_s:.2f} s (counted with {engine}), peak RSS {memory.peak_rss_mb:.0f} MB "
        f"(tree sum), PSS {memory.peak_pss_mb:.0f} MB",
        f"  time ratio check/cookbook: {check_s / cookbook_s:.2f} (target ≤ 0.33; medians of {args.rounds} "
        f"alternating rounds, cookbook/check s: {each})",
        f"  ftcli check --counter tiktoken: {reference.seconds:.2f} s; ratio to the cookbook "
        f"{reference.seconds / cookbook_s:.2f}",
        "  one process only counting the message texts (the floor of any one-process checker): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in limits.items())
        + f"; check/floor ({engine}): {check_s / limits[engine]:.2f}",
        f"  peak PSS: {memory.peak_pss_mb:.0f} MB (target ≤ 150 MB)",
    ]
    if not args.skip_1gb:
        big = run_check(dataset(1000), memory="sampled")
        lines += [
            f"1 GB file: ftcli check {big.seconds:.1f} s, peak RSS {big.peak_rss_mb:.0f} MB, "
            f"PSS {big.peak_pss_mb:.0f} MB",
            f"  memory ratio 1 GB / 100 MB (PSS): {big.peak_pss_mb / memory.peak_pss_mb:.2f} (target ≤ 1.2)",
        ]
    return lines


if __name__ == "__main__":
    for line in main():
        print(line)
