"""Issue 29, point 3, against a real `ftcli serve`: with OPENAI_API_KEY set (for OpenAI), `ftcli --base-url` to the
user's own server sends the server's per-start key from its runtime file, not the OpenAI key (which got a 401 and the
hint "set OPENAI_API_KEY" before)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.local]

OPENAI_KEY = "sk-proj-notForTheLocalServer0123456789"


def test_the_runtime_key_wins_over_the_environment_key(server: Server, tmp_path: Path) -> None:
    env = {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "FTCLI_PROFILE": "",
        "OPENAI_BASE_URL": "",
        "OPENAI_API_KEY": OPENAI_KEY,
    }
    for args in (["--base-url", server.url, "models"], ["--base-url", server.url, "--json", "status"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        assert OPENAI_KEY not in result.output
    named = CliRunner().invoke(app, ["--json", "models"], env={**env, "OPENAI_BASE_URL": server.url})
    assert named.exit_code == 0, named.output  # even named for the URL, the env key loses to the server's own
