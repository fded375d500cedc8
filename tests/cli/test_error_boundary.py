"""Issue 29, point 8: an unexpected exception (a bug: Together's bare-list `GET /models` once raised AttributeError
inside the SDK) ends as one line on stderr that says it is a bug, with exit code 70; `--debug` adds the traceback;
`--json` makes the line a JSON error document. No key in any of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import EXIT_INTERNAL, app

KEY = "sk-proj-boundaryCanary0123456789"


@pytest.fixture
def broken_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service `ftcli models` calls fails as the SDK did on Together's answer (and quotes a key, as a bug might)."""
    import ftcli.service.models

    def list_models(*args: object, **kwargs: object) -> object:
        raise AttributeError(f"'list' object has no attribute '_set_private_attributes' (key {KEY})\nsecond line")

    monkeypatch.setattr(ftcli.service.models, "list_models", list_models)


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_RUNTIME_DIR": str(tmp_path / "runtime"),
        "FTCLI_PROFILE": "",
        "OPENAI_BASE_URL": "",
        "AZURE_OPENAI_ENDPOINT": "",
        "OPENAI_API_KEY": KEY,
    }


@pytest.mark.usefixtures("broken_models")
def test_a_bug_is_one_line_that_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models"], env=_env(tmp_path))
    assert result.exit_code == EXIT_INTERNAL == 70
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "a bug in ftcli" in lines[0] and "AttributeError" in lines[0] and "--debug" in lines[0]
    assert "_set_private_attributes" in lines[0] and "second line" not in lines[0]
    assert "Traceback" not in result.output and KEY not in result.output and result.stdout == ""


@pytest.mark.usefixtures("broken_models")
def test_with_json_the_bug_is_a_json_error_document(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "--json"], env=_env(tmp_path))
    assert result.exit_code == EXIT_INTERNAL and result.stdout == ""
    document = json.loads(result.stderr.strip().splitlines()[-1])
    assert set(document) == {"error"} and document["error"]["hint"] is None
    assert "a bug in ftcli" in document["error"]["message"] and "AttributeError" in document["error"]["message"]
    assert KEY not in result.stderr


@pytest.mark.usefixtures("broken_models")
def test_with_debug_the_traceback_is_printed_without_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--debug", "models"], env=_env(tmp_path))
    assert result.exit_code == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in result.stderr and "in list_models" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: internal error, a bug in ftcli")
    assert KEY not in result.output


def test_the_commands_own_exits_and_usage_errors_are_not_bugs(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["rules"], env=_env(tmp_path)).exit_code == 0
    assert runner.invoke(app, ["status", "--no-such-flag"], env=_env(tmp_path)).exit_code == 2
    missing = runner.invoke(app, ["check", str(tmp_path / "missing.jsonl")], env=_env(tmp_path))
    assert missing.exit_code == 2 and "bug" not in missing.output
