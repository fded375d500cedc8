"""Golden answers: a model's answers to a set of prompts, recorded as chat JSONL while the model still exists, so a
successor can be compared with it later (`ftcli chat --eval golden.jsonl --model NEW`).

The output holds one chat example per prompt (the prompt's messages + the recorded answer), valid for `check` and
for training; the model and sampling settings go beside it in `<output>.meta.json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ftcli.data.convert.writer import write_bytes_atomic
from ftcli.data.eval.cases import read_prompts
from ftcli.service.chat import ChatParams, complete
from ftcli.service.eval_run import Sampling

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass(frozen=True, slots=True)
class GoldenSettings:
    model: str
    temperature: float = 0.0  # deterministic where the backend allows it
    max_tokens: int | None = None
    seed: int | None = None

    def params(self) -> ChatParams:
        return Sampling(self.temperature, self.max_tokens, self.seed).params(self.model, tools=None)


def record_golden(
    client: OpenAI, prompts_path: Path, output: Path, settings: GoldenSettings
) -> Iterator[tuple[int, int]]:
    """Ask every prompt; yields (done, total) as it goes; writes the output (atomically) and its meta file."""
    prompts = read_prompts(prompts_path)
    lines = []
    for index, prompt in enumerate(prompts, start=1):
        answer = complete(client, settings.params(), prompt)
        lines.append(json.dumps({"messages": [*prompt, {"role": "assistant", "content": answer}]}, ensure_ascii=False))
        yield index, len(prompts)
    data = ("\n".join(lines) + "\n").encode()
    write_bytes_atomic(output, data)
    meta = {
        **asdict(settings),
        "prompts": str(prompts_path),
        "prompts_sha256": hashlib.sha256(prompts_path.read_bytes()).hexdigest(),
        "answers": len(lines),
        "sha256": hashlib.sha256(data).hexdigest(),
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_bytes_atomic(meta_path(output), (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())


def meta_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")
