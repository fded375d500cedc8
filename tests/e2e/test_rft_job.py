"""A reinforcement fine-tuning job created with the official `openai` SDK against a real `ftcli serve`, as a user
would send it to OpenAI: it succeeds, its metrics events and checkpoints carry the rewards (so `ftcli status` can
draw them), and a python grader that fails on some records leaves an error event while training goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server, cli_json

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]

# 1 when the answer has an "a" in it; the odd records' `n` makes it fail (an error event, reward 0)
SOURCE = """def grade(sample, item):
    if item["n"] % 2:
        raise ValueError("odd record")
    return 1.0 if "a" in sample["output_text"] else 0.0
"""


def test_an_rft_job_made_with_the_openai_sdk_succeeds_with_rewards_in_its_events(server: Server) -> None:
    records = [{"messages": [{"role": "user", "content": f"Write a word ({n})."}], "n": n} for n in range(4)]
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        data = "".join(json.dumps(record) + "\n" for record in records).encode()
        uploaded = sdk.files.create(file=("rft.jsonl", data), purpose="fine-tune")
        # OpenAI's keys, and two of ftcli's own (the SDK sends a method's hyperparameters as given)
        hyperparameters = {"n_epochs": 2, "batch_size": 4, "eval_interval": 1, "reasoning_effort": "low",
                           "samples_per_prompt": 2, "max_new_tokens": 4}  # fmt: skip
        method: Any = {
            "type": "reinforcement",
            "reinforcement": {
                "grader": {"type": "python", "name": "has an a", "source": SOURCE},
                "hyperparameters": hyperparameters,
            },
        }
        created = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny", training_file=uploaded.id, validation_file=uploaded.id, method=method
        )
        deadline = time.monotonic() + 600
        job = sdk.fine_tuning.jobs.retrieve(created.id)
        while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = sdk.fine_tuning.jobs.retrieve(created.id)
        events = sdk.fine_tuning.jobs.list_events(created.id, limit=100).data
        assert job.status == "succeeded", (job.error, [e.message for e in events])
        assert job.method.type == "reinforcement" and job.method.reinforcement is not None
        trained = job.method.reinforcement.hyperparameters
        assert (trained.n_epochs, trained.batch_size, trained.eval_interval) == (2, 4, 1)
        assert trained.reasoning_effort == "low" and trained.compute_multiplier == 1.0
        assert job.method.reinforcement.grader.type == "python"

        steps = [e.data for e in events if e.type == "metrics"]
        assert sorted(step["step"] for step in steps) == [1, 2]  # type: ignore[index]
        for step in steps:
            assert 0 <= step["train_reward_mean"] <= 0.5 and step["train_reward_std"] >= 0  # type: ignore[index]
            assert "valid_reward_mean" in step and "train_mean_token_accuracy" not in step  # type: ignore[operator]
        failures = [e for e in events if e.level == "error"]
        assert failures and all("odd record" in e.message for e in failures)  # 2 steps, 2 validations
        assert any("reasoning_effort='low' has no effect here" in e.message for e in events)
        checkpoints = sdk.fine_tuning.jobs.checkpoints.list(created.id).data
        assert checkpoints and all(c.metrics.model_extra and "train_reward_mean" in c.metrics.model_extra
                                   for c in checkpoints)  # fmt: skip
        answer = sdk.chat.completions.create(
            model=job.fine_tuned_model or "", messages=[{"role": "user", "content": "Write a word."}], max_tokens=4
        )
        assert answer.choices[0].message.content is not None


def test_an_rft_job_trained_from_the_cli_is_exported_and_re_trained_from_the_export(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --grader-file` → `export` keeps the grader, the prompts and the settings → `train --from-export` runs
    the same RFT job again: same method, grader, data and hyperparameters, linked to the first."""
    monkeypatch.chdir(tmp_path)
    data, grader_file = tmp_path / "rft.jsonl", tmp_path / "grader.json"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"A word ({n})."}]}) + "\n"
                            for n in range(10)))  # fmt: skip
    grader = {"type": "string_check", "name": "has an a", "input": "{{sample.output_text}}", "reference": "a",
              "operation": "like"}  # fmt: skip
    grader_file.write_text(json.dumps(grader))
    settings = ["-H", "samples_per_prompt=2", "-H", "max_new_tokens=3", "--epochs", "1", "--batch-size", "5"]
    old = cli_json(server, tmp_path, "train", "--file", str(data), "--model", "ftcli/tiny", "--grader-file",
              str(grader_file), *settings, "--seed", "5", "--yes", "--wait")  # fmt: skip
    assert old["status"] == "succeeded" and old["method"]["reinforcement"]["grader"] == grader, old

    out = tmp_path / "export"
    cli_json(server, tmp_path, "export", "--out", str(out), "--job", old["id"])
    folder = out / old["id"]
    kept = json.loads((folder / "job.json").read_text())["method"]
    assert kept["type"] == "reinforcement" and kept["reinforcement"]["grader"] == grader
    (copy,) = (folder / "files").iterdir()
    assert copy.read_bytes() == data.read_bytes()

    new = cli_json(server, tmp_path, "train", "--from-export", str(folder), "--model", "ftcli/tiny", "--yes", "--wait")
    new = cli_json(server, tmp_path, "status", new["id"])
    assert new["status"] == "succeeded" and new["id"] != old["id"], new
    assert new["metadata"]["ftcli_retrain_of"] == old["id"] and new["seed"] == 5
    assert new["method"]["type"] == "reinforcement" and new["method"]["reinforcement"]["grader"] == grader
    trained, before = (
        new["method"]["reinforcement"]["hyperparameters"],
        old["method"]["reinforcement"]["hyperparameters"],
    )
    assert trained == before and trained["samples_per_prompt"] == 2 and trained["max_new_tokens"] == 3, trained
