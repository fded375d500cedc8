"""The `--json` contract (docs/json.md) for the verbs that need no backend: `--json` before or after the verb, stdout
is exactly one JSON document; errors are one JSON object on stderr with the exit code unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app, json_flag_first
from tests.conftest import qa


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(qa(i)) + "\n" for i in range(12)))
    (tmp_path / "alpaca.json").write_text(
        json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"}, {"instruction": "", "output": ""}])
    )
    return {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}


def documents(env: dict[str, str], *args: str, exit_code: int = 0) -> list[Any]:
    parsed = []
    for argv in (["--json", *args], [*args, "--json"]):
        result = CliRunner().invoke(app, argv, env=env)
        assert result.exit_code == exit_code, (argv, result.output)
        parsed.append(json.loads(result.stdout))
    return parsed


def test_convert_reports_what_it_wrote_and_skipped(env: dict[str, str]) -> None:
    for result in documents(env, "convert", "alpaca.json", "-o", "out.jsonl", "--force", exit_code=1):
        assert result["preset"] == "alpaca" and result["detected"] and result["written"] == 1
        assert result["outputs"] == ["out.jsonl"] and len(result["skipped"]) == 1
        assert result["skipped"][0]["location"] and result["skipped"][0]["reason"]


def test_check_json_is_the_versioned_report_and_the_same_as_format_json(env: dict[str, str]) -> None:
    for report in documents(env, "check", "train.jsonl"):
        assert report["version"] == 2 and report["examples"] == 12  # docs/check-json.md
    result = CliRunner().invoke(app, ["check", "train.jsonl", "--format", "json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout).keys() == report.keys()


def test_rules(env: dict[str, str]) -> None:
    for rules in documents(env, "rules"):
        assert {"FT002", "FT301"} <= {rule["code"] for rule in rules}


def test_profile_add_list_use_remove(env: dict[str, str]) -> None:
    for saved in documents(env, "profile", "add", "local", "--base-url", "http://127.0.0.1:8765/v1"):
        assert saved == {"profile": "local", "saved": True, "current": False}
    for rows in documents(env, "profile", "list"):
        assert [(row["name"], row["url"]) for row in rows] == [("local", "http://127.0.0.1:8765/v1")]
    for used in documents(env, "profile", "use", "local"):
        assert used == {"profile": "local", "current": True}
    removed = CliRunner().invoke(app, ["profile", "remove", "local", "--json"], env=env)
    assert removed.exit_code == 0 and json.loads(removed.stdout) == {"profile": "local", "removed": True}


def test_version(env: dict[str, str]) -> None:
    for version in documents(env, "--version"):
        assert version["json_schema"] == 1 and version["version"]
    assert CliRunner().invoke(app, ["--version"], env=env).stdout.startswith("ftcli ")


def test_status_web_is_a_document_too(env: dict[str, str]) -> None:
    for page in documents(env, "--base-url", "http://127.0.0.1:8765/v1", "status", "ftjob-1", "--web"):
        assert page == {"url": "http://127.0.0.1:8765/#/jobs/ftjob-1"}


def test_errors_are_one_json_object_on_stderr(env: dict[str, str], tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["check", "nope.jsonl", "--json"], env=env)
    assert missing.exit_code == 2 and missing.stdout == ""
    assert "nope.jsonl" in json.loads(missing.stderr)["error"]["message"]
    usage = CliRunner().invoke(app, ["convert", "train.jsonl", "--json"], env=env)  # no -o
    assert usage.exit_code == 2 and usage.stdout == "" and "--output" in json.loads(usage.stderr)["error"]["message"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    for args in (["chat", "-m", "m", "-"], ["convert", "-", "-o", "x.jsonl", "--preset", "openai"]):
        undecodable = CliRunner().invoke(app, [*args, "--json"], env=env, input=b"caf\xe9\n")
        assert undecodable.exit_code == 2 and undecodable.stdout == "", undecodable.output
        assert "not UTF-8" in json.loads(undecodable.stderr)["error"]["message"]


def test_an_unwritable_output_is_a_clear_error_not_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where a folder should be")
    result = CliRunner().invoke(app, ["convert", "train.jsonl", "-o", "blocked/out.jsonl", "--preset", "openai"])
    assert result.exit_code == 2, result.output
    assert "blocked" in result.stderr and "Traceback" not in result.output


def test_json_may_come_anywhere_before_a_double_dash() -> None:
    assert json_flag_first(["status", "ftjob-1", "--json"]) == ["--json", "status", "ftjob-1"]
    assert json_flag_first(["chat", "-m", "m", "--", "--json"]) == ["chat", "-m", "m", "--", "--json"]
    assert json_flag_first(["rules"]) == ["rules"]
