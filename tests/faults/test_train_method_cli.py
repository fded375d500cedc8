"""`ftcli check`, `upload` and `train` agree on a file's method, from the CLI (issue 23, point 3): a DPO file that
`check` passes trains as DPO without --method, and --method sft on it is refused naming --method dpo, before anything
is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.conftest import run_cli as run
from tests.faults.fakeapi import FakeAPI, error

MODEL = "gpt-4.1-mini-2025-04-14"


def preference(i: int) -> dict[str, object]:
    return {"input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{2 * i}"}],
            "non_preferred_output": [{"role": "assistant", "content": "no idea"}]}  # fmt: skip


def test_a_dpo_file_check_passes_trains_as_dpo(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path]
) -> None:
    _, created = api
    data = write_jsonl([preference(i) for i in range(12)])
    checked = run("check", str(data), "--format", "json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["method"] == "dpo"
    trained = run("train", "--file", str(data), "--model", MODEL, "--beta", "0.2", "--yes")
    assert trained.exit_code == 0, trained.output
    (body,) = created
    assert body["method"]["type"] == "dpo" and body["method"]["dpo"]["hyperparameters"]["beta"] == 0.2


def test_method_sft_on_a_dpo_file_is_refused_naming_method_dpo(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path]
) -> None:
    fake, created = api
    data = write_jsonl([preference(i) for i in range(12)])
    refused = run("train", "--file", str(data), "--model", MODEL, "--method", "sft", "--yes")
    assert refused.exit_code == 1
    assert refused.stderr.count("FT104") == 1 and "--method dpo" in refused.stderr
    assert "--no-check" not in refused.stderr
    assert fake.requests == [] and created == []


def test_a_dpo_file_uploaded_then_trained_by_its_id_trains_as_dpo(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path]
) -> None:
    fake, created = api
    uploaded = run("--json", "upload", str(write_jsonl([preference(i) for i in range(12)])))
    assert uploaded.exit_code == 0, uploaded.output
    file_id = json.loads(uploaded.stdout)["id"]
    trained = run("train", "--file", file_id, "--model", MODEL, "--yes")  # no --method: its records decide
    assert trained.exit_code == 0, trained.output
    assert ("GET", f"/v1/files/{file_id}/content") in fake.requests  # read back, as `check` reads a local file
    (body,) = created
    assert body["method"]["type"] == "dpo" and body["training_file"] == file_id


def test_an_id_whose_backend_keeps_its_content_is_refused_naming_method(
    api: tuple[FakeAPI, list[dict[str, Any]]], write_jsonl: Callable[..., Path]
) -> None:
    fake, created = api
    uploaded = run("--json", "upload", str(write_jsonl([preference(i) for i in range(12)])))
    file_id = json.loads(uploaded.stdout)["id"]
    kept = "Not allowed to download files of purpose: fine-tune"  # what OpenAI answers
    fake.faults.append(lambda request: error(400, kept) if request.url.path.endswith("/content") else None)
    refused = run("train", "--file", file_id, "--model", MODEL, "--yes")
    assert refused.exit_code == 2, refused.output
    assert f"can't tell which method {file_id} is for" in refused.stderr and kept in refused.stderr
    assert "--method sft or --method dpo" in refused.stderr
    assert created == []  # never trained as SFT by guess
    assert run("train", "--file", file_id, "--model", MODEL, "--method", "dpo", "--yes").exit_code == 0
    (body,) = created
    assert body["method"]["type"] == "dpo"
