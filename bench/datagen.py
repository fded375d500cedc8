"""Generate a realistic chat JSONL of a given size for benchmarks: bilingual legal/general Q&A.

The issue sizes the benchmark as ~90k examples and ~35M tokens per 100 MB. Real sentences give 100 MB = 70,536
examples, 30.2M cl100k tokens or 22.1M o200k tokens (o200k packs Chinese more densely); the benchmark counts
with o200k (gpt-4o-mini). Sentences come from real corpora read in place (never copied): English from
../shared/datasets/llamafactory/alpaca_en_demo.json, Chinese from the ChatLaw demo file and ftcli's own example.
System prompts repeat across examples as they do in real data sets; a fifth of the examples are multi-turn.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SYSTEM_PROMPTS = [
    "You are a helpful assistant for a legal services company. Answer precisely and cite the relevant law.",
    "You are a customer support agent. Be friendly, concise and accurate.",
    "You are a tutor who explains step by step and checks the student's understanding.",
    "You are a senior software engineer reviewing code and answering technical questions.",
    "You are a medical information assistant. You do not give diagnoses; you explain and refer.",
]


REPO = Path(__file__).resolve().parents[1]


def english_sentences() -> list[str]:
    corpus = json.loads((SHARED / "llamafactory/alpaca_en_demo.json").read_text(encoding="utf-8"))
    text = " ".join(r["output"] + " " + r["instruction"] for r in corpus)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 20 < len(s.strip()) < 400]


def chinese_sentences() -> list[str]:
    texts = []
    for path in (SHARED / "chatlaw/demo_data_法律咨询.jsonl", REPO / "examples/legal_qa_chatlaw.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            for turn in json.loads(line)["chat"]:
                texts += [turn["咨询者"], turn["ChatLAW"]]
    return [s + "。" for t in texts for s in re.split(r"[。！？]", t) if len(s) > 6]


def generate(path: Path, target_bytes: int, *, seed: int = 0) -> int:
    """Write examples until the file reaches target_bytes; returns the number of examples."""
    rng = random.Random(seed)
    pools = [english_sentences(), chinese_sentences()]
    written = examples = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target_bytes:
            pool = pools[examples % 3 != 0]  # two thirds Chinese, one third English
            joiner = "" if pool is pools[1] else " "
            messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
            for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
                messages.append({"role": "user", "content": joiner.join(rng.sample(pool, rng.randint(1, 3)))})
                messages.append({"role": "assistant", "content": joiner.join(rng.sample(pool, rng.randint(3, 8)))})
            line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            examples += 1
    return examples
