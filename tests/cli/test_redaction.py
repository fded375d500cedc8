"""Issue 29, point 7: every key ftcli knows is removed by value from what it prints, whatever the key looks like: a
gateway's `myGateway_…` has no known pattern, and a server that echoes it in its 401 must not get it printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.data.errors import forget_secrets, redact, remember_secrets
from tests.cli.loopback_server import echo_the_key_in_a_401, loopback_server

GATEWAY_KEY = "myGateway_Q7tXv2LpR9wZ"  # no sk-, no tgp_, not hex: only its value gives it away
PIECES = (GATEWAY_KEY, "Q7tXv2LpR9wZ")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "FTCLI_RUNTIME_DIR": str(tmp_path / "runtime"),
        "FTCLI_PROFILE": "",
        "OPENAI_BASE_URL": "",
        "OPENAI_API_KEY": "",
        "AZURE_OPENAI_ENDPOINT": "",
        **extra,
    }


@pytest.mark.parametrize("source", ["profile", "environment"])
def test_a_key_echoed_in_a_401_is_never_printed(tmp_path: Path, source: str) -> None:
    runner = CliRunner()
    with loopback_server(echo_the_key_in_a_401) as server:
        if source == "profile":
            env = _env(tmp_path, GW_KEY=GATEWAY_KEY)
            added = runner.invoke(
                app, ["profile", "add", "gw", "--base-url", server.url, "--api-key-env", "GW_KEY", "--use"], env=env
            )
            assert added.exit_code == 0, added.output
        else:  # named for that URL by OPENAI_BASE_URL, so it is sent there
            env = _env(tmp_path, OPENAI_BASE_URL=server.url, OPENAI_API_KEY=GATEWAY_KEY)
        outputs = []
        for args in (
            ["models"],
            ["--json", "models"],
            ["--debug", "models"],
            ["--json", "--debug", "status"],
            ["--json", "chat", "--model", "m", "hi"],
        ):
            result = runner.invoke(app, args, env=env)
            assert result.exit_code == 1, result.output  # AuthError
            outputs.append((args, result.stdout, result.stderr))
    assert server.authorizations and all(sent == f"Bearer {GATEWAY_KEY}" for sent in server.authorizations)
    for args, stdout, stderr in outputs:
        assert "401" in stderr and "***" in stderr, (args, stderr)  # the echo arrived, without the key
        for piece in PIECES:
            assert piece not in stdout and piece not in stderr, (args, stderr)
        if "--json" in args:
            assert json.loads(stderr.strip().splitlines()[-1])["error"]["message"].count("***") >= 1


def test_redaction_is_by_value_in_every_escaping_and_by_pattern() -> None:
    try:
        remember_secrets('myGateway/Q7+tX"v2', "short")  # under 6 characters: not remembered (it'd blank words)
        text = 'raw myGateway/Q7+tX"v2, json "myGateway/Q7+tX\\"v2", url myGateway%2FQ7%2BtX%22v2, a short word'
        assert redact(text) == 'raw ***, json "***", url ***, a short word'
        assert redact("key sk-proj-abcdef and tgp_v1_abcdefghij") == "key *** and ***"
    finally:
        forget_secrets()
    assert redact('raw myGateway/Q7+tX"v2') == 'raw myGateway/Q7+tX"v2'  # forgotten
