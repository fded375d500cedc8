"""The `--json` contract for scripts (docs/json.md), verb by verb against Steady serving OpenAI's spec: `--json`
before or after the verb, stdout holds exactly one JSON document (json.loads of all of it), the command's result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import qa

pytestmark = pytest.mark.contract


@pytest.fixture
def env(steady_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(qa(i)) + "\n" for i in range(12)))
    return {
        "OPENAI_API_KEY": "sk-contract",
        "OPENAI_BASE_URL": steady_url,
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
    }


def documents(env: dict[str, str], *args: str) -> list[Any]:
    """The command run twice, `--json` first and last; each run's whole stdout parsed as one document."""
    from ftcli.cli.app import app

    parsed = []
    for argv in (["--json", *args], [*args, "--json"]):
        result = CliRunner().invoke(app, argv, env=env)
        assert result.exit_code == 0, (argv, result.output)
        parsed.append(json.loads(result.stdout))
    assert parsed[0].keys() == parsed[1].keys() if isinstance(parsed[0], dict) else len(parsed[0]) == len(parsed[1])
    return parsed


def test_upload(env: dict[str, str]) -> None:
    for file in documents(env, "upload", "train.jsonl", "--force"):
        assert file["object"] == "file" and file["id"]


def test_train_without_wait_is_the_created_job(env: dict[str, str]) -> None:
    for job in documents(env, "train", "--file", "file-abc", "--model", "gpt-4o-mini-2024-07-18", "--yes"):
        assert job["object"] == "fine_tuning.job" and job["id"]


def test_status_list_one_job_and_events_with_checkpoints(env: dict[str, str]) -> None:
    for listed in documents(env, "status"):
        assert isinstance(listed, list) and all(job["object"] == "fine_tuning.job" for job in listed)
    for job in documents(env, "status", "ftjob-abc"):
        assert job["object"] == "fine_tuning.job" and "events" not in job and "checkpoints" not in job
    for job in documents(env, "status", "ftjob-abc", "--events", "--checkpoints"):
        assert job["object"] == "fine_tuning.job"
        assert all(e["object"] == "fine_tuning.job.event" for e in job["events"])
        assert all(c["object"] == "fine_tuning.job.checkpoint" for c in job["checkpoints"])


@pytest.mark.parametrize("verb", [("cancel", "ftjob-abc", "--yes"), ("pause", "ftjob-abc"), ("resume", "ftjob-abc")])
def test_cancel_pause_resume(env: dict[str, str], verb: tuple[str, ...]) -> None:
    for job in documents(env, *verb):
        assert job["object"] == "fine_tuning.job"


def test_chat_one_answer_with_usage_and_finish_reason(env: dict[str, str]) -> None:
    for answer in documents(env, "chat", "--model", "gpt-4o-mini", "Is a verbal contract binding?"):
        assert set(answer) == {"model", "answer", "tool_calls", "finish_reason", "usage", "reasoning"}
        assert isinstance(answer["answer"], str) and answer["model"]
        assert answer["usage"] is None or isinstance(
            answer["usage"]["total_tokens"], int
        )  # the spec's example has none


def test_chat_compare_and_eval(env: dict[str, str]) -> None:
    for rows in documents(env, "chat", "--model", "a", "--compare", "b", "hello"):
        assert [row["prompt"] for row in rows] == ["hello"] and {"a", "b"} <= set(rows[0])
    for summary in documents(env, "chat", "--model", "a", "--eval", "train.jsonl"):
        assert summary["examples"] == 12 and 0 <= summary["mean_similarity"] <= 1


def test_models(env: dict[str, str]) -> None:
    for rows in documents(env, "models"):
        assert rows and all({"id", "base_model", "shutdown_date", "days_left"} <= set(row) for row in rows)


def test_export_jobs_and_golden(env: dict[str, str], tmp_path: Path) -> None:
    for summary in documents(env, "export", "--out", "exported", "--job", "ftjob-abc"):
        assert summary["folder"] == "exported" and summary["jobs"] == 1
    for golden in documents(env, "export", "--golden", "train.jsonl", "--model", "gpt-4o-mini", "--out", "g.jsonl"):
        assert golden["answers"] == "g.jsonl" and (tmp_path / "g.jsonl").exists()


def test_errors_are_one_json_object_on_stderr_with_the_exit_code_unchanged(env: dict[str, str]) -> None:
    from ftcli.cli.app import app

    usage = CliRunner().invoke(app, ["train", "--file", "file-abc", "--json"], env=env)  # no --model
    assert usage.exit_code == 2 and usage.stdout == ""
    assert "--model" in json.loads(usage.stderr)["error"]["message"]
    refused = CliRunner().invoke(app, ["train", "--file", "file-abc", "--model", "m", "--json"], env=env)  # no --yes
    assert refused.exit_code == 2 and refused.stdout == "" and json.loads(refused.stderr)["error"]["hint"]
