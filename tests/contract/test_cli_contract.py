"""The remote verbs from the installed CLI, against Steady: exit codes, JSON output, manifests, no key shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.conftest import qa

pytestmark = pytest.mark.contract
runner = CliRunner()
KEY = "sk-contract-secret-4242424242"


@pytest.fixture
def env(steady_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": steady_url,
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
    }


def invoke(env: dict[str, str], *args: str) -> object:
    result = runner.invoke(app, list(args), env=env)
    assert KEY not in result.output
    return result


def test_status_lists_and_shows_jobs(env: dict[str, str]) -> None:
    listed = invoke(env, "--json", "status")
    assert listed.exit_code == 0, listed.output  # type: ignore[attr-defined]
    assert isinstance(json.loads(listed.stdout), list)  # type: ignore[attr-defined]
    shown = invoke(env, "status", "ftjob-abc", "--events", "--checkpoints")
    assert shown.exit_code == 0, shown.output  # type: ignore[attr-defined]
    assert "ftjob" in shown.stdout or "status" in shown.stdout  # type: ignore[attr-defined]


def test_train_from_a_local_file_writes_a_manifest(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(qa(i)) + "\n" for i in range(12)))
    result = invoke(
        env,
        "--json",
        "train",
        "--file",
        str(data),
        "--model",
        "gpt-4o-mini-2024-07-18",
        "--epochs",
        "2",
        "--suffix",
        "legal",
        "--metadata",
        "team=law",
        "--yes",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    job = json.loads(result.stdout)  # type: ignore[attr-defined]
    manifest = json.loads((tmp_path / ".ftcli" / "runs" / f"{job['id']}.json").read_text())
    assert manifest["training_file"]["sha256"] and manifest["estimate"]["epochs"] == 2
    assert manifest["parameters"]["supervised"]["hyperparameters"]["n_epochs"] == 2
    assert KEY not in json.dumps(manifest)


def test_train_refuses_a_file_with_errors(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n')
    result = invoke(env, "train", "--file", str(bad), "--model", "gpt-4o-mini", "--yes")
    assert result.exit_code == 1 and "line 1: FT002" in result.stderr  # type: ignore[attr-defined]


def test_train_needs_yes_without_a_terminal(env: dict[str, str]) -> None:
    result = invoke(env, "train", "--file", "file-abc", "--model", "gpt-4o-mini")
    assert result.exit_code == 2 and "--yes" in result.stderr  # type: ignore[attr-defined]


def test_cancel_pause_resume(env: dict[str, str]) -> None:
    for args in (("cancel", "ftjob-abc", "--yes"), ("pause", "ftjob-abc"), ("resume", "ftjob-abc")):
        result = invoke(env, *args)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]


def test_upload_prints_the_file_id(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(qa(i)) + "\n" for i in range(12)))
    result = invoke(env, "upload", str(data))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert result.stdout.strip()  # type: ignore[attr-defined]


def test_chat_one_prompt(env: dict[str, str]) -> None:
    result = invoke(env, "--json", "chat", "--model", "gpt-4o-mini", "What is the statute of limitations?")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "answer" in json.loads(result.stdout)  # type: ignore[attr-defined]


def test_debug_logs_requests_without_the_key(env: dict[str, str]) -> None:
    result = invoke(env, "--debug", "status", "ftjob-abc")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "debug openai" in result.stderr or "debug httpx2" in result.stderr  # type: ignore[attr-defined]
    assert "4242424242" not in result.output  # type: ignore[attr-defined]
    import logging

    assert all(not logging.getLogger(name).handlers for name in ("openai", "httpx2", "ftcli"))  # undone at the end
