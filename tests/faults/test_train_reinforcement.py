"""`ftcli train --method reinforcement --grader-file` (issue 25): the job request carries the grader and sends
`method: {type: "reinforcement", reinforcement: {grader, hyperparameters}}`; the training file is checked as RFT
data against the grader before anything is uploaded; `-H` keys are checked against the reinforcement schema where the
backend's is known; Together, which has no RFT, refuses before the upload, naming the method."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ftcli.data.hyperparameters import InvalidHyperparameter
from ftcli.service.errors import CheckFailed, UsageError
from ftcli.service.jobs import JobRequest
from ftcli.service.training import check_hyperparameters, prepare
from tests.faults.conftest import run_cli as run
from tests.faults.fakeapi import FakeAPI
from tests.faults.test_together_content import Together

MODEL = "o4-mini-2025-04-16"  # OpenAI's RFT model (not in ftcli's catalog: FT302 only)
GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def prompt(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}], "answer": str(2 * i)}


def grader_file(tmp_path: Path, grader: object = GRADER) -> Path:
    path = tmp_path / "grader.json"
    path.write_text(json.dumps(grader), encoding="utf-8")
    return path


def test_the_job_sends_the_grader_and_the_reinforcement_hyperparameters(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    _, created = api
    data = write_jsonl([prompt(i) for i in range(12)])
    checked = run("check", str(data), "--grader-file", str(grader_file(tmp_path)), "--format", "json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["method"] == "reinforcement"
    trained = run("train", "--file", str(data), "--model", MODEL, "--grader-file", str(grader_file(tmp_path)),
                  "--epochs", "2", "-H", "eval_interval=5", "-H", "reasoning_effort=low", "--yes")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    (body,) = created
    assert body["method"] == {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {"eval_interval": 5, "reasoning_effort": "low", "n_epochs": 2},
        },
    }
    manifest = json.loads(next((tmp_path / ".ftcli" / "runs").glob("*.json")).read_text())
    assert manifest["method"] == "reinforcement" and manifest["parameters"]["reinforcement"]["grader"] == GRADER


def test_openai_keys_of_another_method_and_bad_values_are_refused_before_anything_is_sent(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    fake, created = api
    data, grader = write_jsonl([prompt(i) for i in range(12)]), str(grader_file(tmp_path))
    own = run("train", "--file", str(data), "--model", MODEL, "--grader-file", grader, "-H", "lora_rank=8", "--yes")
    assert own.exit_code == 2 and "OpenAI takes no hyperparameter lora_rank" in own.stderr
    assert "-H (eval_interval, eval_samples, compute_multiplier, reasoning_effort)" in own.stderr
    bad = run("train", "--file", str(data), "--model", MODEL, "--grader-file", grader, "-H", "eval_interval=0",
              "--yes")  # fmt: skip
    assert bad.exit_code == 2 and "eval_interval must be" in bad.stderr
    assert fake.requests == [] and created == []


def test_the_training_file_is_checked_as_rft_data_before_the_upload(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    fake, created = api
    records = [prompt(i) for i in range(12)]
    records[4]["messages"].append({"role": "assistant", "content": "8"})
    del records[7]["answer"]
    data = write_jsonl(records)
    refused = run("train", "--file", str(data), "--model", MODEL, "--grader-file", str(grader_file(tmp_path)),
                  "--yes")  # fmt: skip
    assert refused.exit_code == 1, refused.output
    assert "line 5: FT140" in refused.stderr and "line 8: FT141" in refused.stderr
    assert "--method reinforcement --grader-file GRADER.json" in " ".join(refused.stderr.split())
    assert fake.requests == [] and created == []


def test_an_invalid_grader_or_none_is_refused_naming_why(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    fake, created = api
    data = write_jsonl([prompt(i) for i in range(12)])
    invalid = grader_file(tmp_path, {**GRADER, "operation": "equals"})
    refused = run("train", "--file", str(data), "--model", MODEL, "--grader-file", str(invalid), "--yes")
    assert refused.exit_code == 2 and "grader.operation" in refused.stderr
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    broken = run("train", "--file", str(data), "--model", MODEL, "--grader-file", str(tmp_path / "broken.json"))
    assert broken.exit_code == 2 and "--grader-file" in broken.stderr and "not JSON" in broken.stderr
    none = run("train", "--file", str(data), "--model", MODEL, "--method", "reinforcement", "--yes")
    assert none.exit_code == 2 and "--grader-file" in none.stderr
    sft = run("train", "--file", str(data), "--model", MODEL, "--method", "sft", "--grader-file", str(invalid))
    assert sft.exit_code == 2
    assert fake.requests == [] and created == []


def test_ftcli_serves_schema_checks_the_reinforcement_keys() -> None:
    request = JobRequest(model="ftcli/tiny", training_file="file-1", method="reinforcement", grader=GRADER,
                         extra_hyperparameters={"samples_per_prompt": 8, "kl_coefficient": 0.0})  # fmt: skip
    check_hyperparameters(request, "compatible", ftcli_server=True)
    for wrong, named in (({"packing": True}, "unknown hyperparameter \"packing\" for reinforcement"),
                         ({"samples_per_prompt": 1}, "samples_per_prompt must be")):  # fmt: skip
        with pytest.raises(InvalidHyperparameter, match=named):
            check_hyperparameters(replace(request, extra_hyperparameters=wrong), "compatible", ftcli_server=True)
    # another OpenAI-compatible server's keys are its own business: passed through
    check_hyperparameters(replace(request, extra_hyperparameters={"anything": 1}), "compatible")


def test_together_refuses_reinforcement_before_the_upload(write_jsonl: Callable[..., Path]) -> None:
    together = Together()
    data = write_jsonl([prompt(i) for i in range(12)])
    request = JobRequest(model="meta-llama/Llama-3.1-8B", training_file=str(data), method="reinforcement",
                         grader=GRADER)  # fmt: skip
    with pytest.raises(UsageError, match="Together has no reinforcement fine-tuning"):
        prepare(together.backend(), request)
    assert together.sent() == [] and together.created == []


def test_an_exported_rft_job_re_runs_with_its_grader(write_jsonl: Callable[..., Path], tmp_path: Path) -> None:
    import hashlib

    from ftcli.service.backends.openai_protocol import OpenAIBackend

    data = write_jsonl([prompt(i) for i in range(12)])
    folder = tmp_path / "export" / "ftjob-rft"
    (folder / "files").mkdir(parents=True)
    copy = folder / "files" / "train.jsonl"
    copy.write_bytes(data.read_bytes())
    method = {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"n_epochs": 2}}}
    (folder / "job.json").write_text(json.dumps({"id": "ftjob-rft", "model": MODEL, "method": method}))
    artifact = {"bytes": copy.stat().st_size, "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
                "source": "file file-1 (training_file)"}  # fmt: skip
    jobs = {"ftjob-rft": {"artifacts": {"ftjob-rft/files/train.jsonl": artifact}}}
    (folder.parent / "manifest.json").write_text(json.dumps({"format": 1, "jobs": jobs}))
    fake = FakeAPI()
    request = prepare(OpenAIBackend(fake.client()), JobRequest(model=MODEL), from_export=folder).request
    assert (request.method, request.grader, request.n_epochs) == ("reinforcement", GRADER, 2)
    assert request.create_params("t")["method"]["reinforcement"]["grader"] == GRADER
    with pytest.raises(CheckFailed, match="FT204") as refused:  # the user's method wins: prompts aren't sft data
        prepare(OpenAIBackend(fake.client()), JobRequest(model=MODEL, method="sft"), from_export=folder)
    assert "--method reinforcement" in (refused.value.hint or "")
