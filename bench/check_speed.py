"""Benchmark `ftcli check` against the cookbook algorithm on generated data; prints ratios from one run.

Targets (issue 2): on a 100 MB chat JSONL, check takes ≤ 1/3 of the cookbook algorithm's time (same encoding,
same run), peak memory ≤ 150 MB, and a 1 GB file stays within 1.2× the 100 MB peak.

    .venv/bin/python bench/check_speed.py [--skip-1gb]
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
from proctree import Measured, measure  # noqa: E402

WORK = Path(__file__).parent / "_work"
BIN = Path(sys.executable).parent


def dataset(size_mb: int) -> Path:
    path = WORK / f"chat_{size_mb}mb.jsonl"
    if not path.exists() or path.stat().st_size < size_mb * 1_000_000:
        WORK.mkdir(exist_ok=True)
        datagen.generate(path, size_mb * 1_000_000)
    return path


def run_check(path: Path) -> Measured:
    result = measure([str(BIN / "ftcli"), "check", str(path), "--model", "gpt-4o-mini", "--format", "json"])
    json.loads(result.stdout)  # a complete report came out
    return result


def run_cookbook(path: Path) -> Measured:
    return measure([sys.executable, str(Path(__file__).parent / "cookbook.py"), str(path), "o200k_base"])


TOKENIZE_ONLY = """
import json, sys, time
from ftcli.data.tokenizers import get_counting_encoding
encode = get_counting_encoding("o200k_base").encode_ordinary
texts = []
with open(sys.argv[1], encoding="utf-8") as stream:
    for line in stream:
        for message in json.loads(line).get("messages", []):
            if isinstance(message.get("content"), str):
                texts.append(message["content"])
start = time.perf_counter()
tokens = sum(len(encode(text)) for text in texts)
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": tokens}))
"""


def tokenization_limit(path: Path) -> float:
    """Seconds one process needs only to tokenize the file's message texts (parsing excluded): the floor a
    one-process checker can't go under."""
    result = measure([sys.executable, "-c", TOKENIZE_ONLY, str(path)])
    return float(json.loads(result.stdout)["seconds"])


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-1gb", action="store_true")
    args = parser.parse_args()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    small = dataset(100)
    cookbook = run_cookbook(small)
    check = run_check(small)
    report = json.loads(check.stdout)
    limit = tokenization_limit(small)
    tokens = report["statistics"]["tokens_per_example"]["total"]
    cookbook_tokens = json.loads(cookbook.stdout)["tokens"]
    lines += [
        f"100 MB file: {report['examples']:,} examples, {tokens:,} tokens (cookbook counts {cookbook_tokens:,})",
        f"  cookbook algorithm: {cookbook.seconds:.2f} s, peak RSS {cookbook.peak_rss_mb:.0f} MB",
        f"  ftcli check:        {check.seconds:.2f} s, peak RSS {check.peak_rss_mb:.0f} MB (tree sum), "
        f"PSS {check.peak_pss_mb:.0f} MB",
        f"  time ratio check/cookbook: {check.seconds / cookbook.seconds:.2f} (target ≤ 0.33)",
        f"  one-process tokenization alone (the limit of any one-process checker): {limit:.2f} s; "
        f"check/limit: {check.seconds / limit:.2f}",
        f"  peak PSS: {check.peak_pss_mb:.0f} MB (target ≤ 150 MB)",
    ]
    if not args.skip_1gb:
        big = run_check(dataset(1000))
        lines += [
            f"1 GB file: ftcli check {big.seconds:.1f} s, peak RSS {big.peak_rss_mb:.0f} MB, "
            f"PSS {big.peak_pss_mb:.0f} MB",
            f"  memory ratio 1 GB / 100 MB (PSS): {big.peak_pss_mb / check.peak_pss_mb:.2f} (target ≤ 1.2)",
        ]
    return lines


if __name__ == "__main__":
    for line in main():
        print(line)
