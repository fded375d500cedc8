"""SFT, then preferences, from the CLI against a real `ftcli serve` with the tiny base: `train` an SFT job, then
`train --model ft:… --method dpo` on its model, and `train --from-checkpoint` on one of its checkpoints; `status`
shows the lineage (parent → child) and `--json status` carries it; an unknown `ft:` model is refused in words
before anything trains."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_local_loop import cli
from tests.local.zorbia import QA, SYSTEM, chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def _train(server: Server, tmp_path: Path, *args: str) -> dict[str, Any]:
    result: Any = cli(server, tmp_path, "--json", "train", *args, "--yes", "--wait")
    assert result.exit_code == 0, result.output
    job: dict[str, Any] = json.loads(result.stdout)
    assert job["status"] == "succeeded", job
    return job


def test_sft_then_dpo_and_a_checkpoint_trained_further(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sft = tmp_path / "sft.jsonl"
    sft.write_text(chat_jsonl(QA[:2] * 5))
    parent = _train(server, tmp_path, "--model", "ftcli/tiny", "--file", str(sft), "--epochs", "2",
                    "--batch-size", "2")  # fmt: skip
    model = parent["fine_tuned_model"]

    pairs = tmp_path / "dpo.jsonl"  # ten pairs: `check` asks for at least ten examples
    wrong = ["Berlin.", "Tolstoy."]
    pairs.write_text("".join(json.dumps({
        "input": {"messages": [SYSTEM, {"role": "user", "content": q}]},
        "preferred_output": [{"role": "assistant", "content": a}],
        "non_preferred_output": [{"role": "assistant", "content": w}],
    }) + "\n" for (q, a), w in zip(QA[:2], wrong, strict=True)) * 5)  # fmt: skip
    dpo = _train(server, tmp_path, "--model", model, "--file", str(pairs), "--method", "dpo", "--epochs", "1",
                 "--batch-size", "2")  # fmt: skip
    assert dpo["model"] == model and dpo["fine_tuned_model"] == f"ft:ftcli/tiny:local::{dpo['id']}"
    assert dpo["parent"] == {"job_id": parent["id"], "model": model, "checkpoint": None, "base": "ftcli/tiny"}
    shown: Any = cli(server, tmp_path, "--json", "status", dpo["id"], "--events")
    document = json.loads(shown.stdout)
    assert document["parent"] == dpo["parent"]  # the lineage in `--json status`
    losses = [e["data"]["train_loss"] for e in document["events"] if e["type"] == "metrics"]
    assert abs(losses[0] - math.log(2)) < 0.02, losses  # its reference is the SFT model it starts from
    text: Any = cli(server, tmp_path, "status", dpo["id"])
    assert text.exit_code == 0, text.output
    words = " ".join(text.stdout.split())  # as the terminal's width wrapped it
    assert f"continues {model} ({parent['id']}) → {dpo['id']}" in words, text.stdout

    listed: Any = cli(server, tmp_path, "--json", "status", parent["id"], "--checkpoints")
    checkpoint = json.loads(listed.stdout)["checkpoints"][-1]
    further = _train(server, tmp_path, "--from-checkpoint", checkpoint["fine_tuned_model_checkpoint"], "--file",
                     str(sft), "--epochs", "1", "--batch-size", "2")  # fmt: skip
    assert further["parent"]["checkpoint"] == checkpoint["id"] and further["parent"]["job_id"] == parent["id"]


def test_an_unknown_fine_tuned_model_is_refused_before_training(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(chat_jsonl(QA))
    unknown = "ft:ftcli/tiny:local::ftjob-doesnotexist"
    result: Any = cli(server, tmp_path, "train", "--model", unknown, "--file", str(data), "--yes")
    assert result.exit_code == 1, result.output  # the server's refusal (a 400 naming the model)
    assert unknown in result.output and "is not a fine-tuned model or checkpoint of this server" in result.output
    assert "Traceback" not in result.output
    other: Any = cli(server, tmp_path, "train", "--model", "gpt-4o-mini-2024-07-18", "--from-checkpoint",
                     f"{unknown}:ckpt-step-2", "--file", str(data), "--yes")  # fmt: skip
    assert other.exit_code == 2 and "is of ftcli/tiny, not of gpt-4o-mini-2024-07-18" in other.output, other.output
