"""Issue 29, point 3: which key goes to a loopback `--base-url`. A real HTTP server on 127.0.0.1 stands for whatever
took the port (another user's, or the user's own `ftcli serve`) and records the Authorization of every request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.data.local_server import listener_uids, publish
from tests.cli.loopback_server import loopback_server

ENV_KEY = "sk-proj-envCanary0123456789abcdef"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "FTCLI_RUNTIME_DIR": str(tmp_path / "runtime"),
        "FTCLI_PROFILE": "",
        "OPENAI_BASE_URL": "",
        "AZURE_OPENAI_ENDPOINT": "",
        "OPENAI_API_KEY": ENV_KEY,
        **extra,
    }


def test_the_environment_key_never_reaches_whatever_listens_on_a_loopback_url(tmp_path: Path) -> None:
    with loopback_server() as server:
        assert listener_uids(server.port) in ({os.getuid()}, None)  # the real /proc check runs, and passes
        for args in (["--base-url", server.url, "models"], ["--json", "--base-url", server.url, "--debug", "models"]):
            result = CliRunner().invoke(app, args, env=_env(tmp_path))
            assert result.exit_code == 0, result.output
    assert server.authorizations, "the command never reached the server"
    assert all(ENV_KEY not in sent for sent in server.authorizations), server.authorizations
    assert set(server.authorizations) == {"Bearer ftcli-local"}  # the placeholder: the SDK insists on some key


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f000001"])
def test_a_loopback_address_spelled_another_way_is_loopback_too(tmp_path: Path, spelling: str) -> None:
    """The review's bypass: `127.1` (and the numeric forms inet_aton takes) reach 127.0.0.1, but were not taken for
    loopback, so the environment's key went to whatever listened there."""
    with loopback_server() as server:
        url = server.url.replace("127.0.0.1", spelling)
        result = CliRunner().invoke(app, ["--base-url", url, "models"], env=_env(tmp_path))
        assert result.exit_code == 0, result.output
    assert server.authorizations and all(ENV_KEY not in sent for sent in server.authorizations)


@pytest.mark.parametrize("url", ["http://0177.0.0.1:1/v1", "ftp://example.com/", "http:///v1"])
def test_a_url_the_client_cant_use_is_a_usage_error_not_a_crash(tmp_path: Path, url: str) -> None:
    result = CliRunner().invoke(app, ["--base-url", url, "models"], env=_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_an_environment_key_named_for_that_url_goes_there(tmp_path: Path) -> None:
    with loopback_server() as server:
        result = CliRunner().invoke(app, ["models"], env=_env(tmp_path, OPENAI_BASE_URL=server.url))
        assert result.exit_code == 0, result.output
    assert server.authorizations == [f"Bearer {ENV_KEY}"]


def test_the_own_servers_runtime_key_wins_over_the_environment_key(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with loopback_server() as server:
        # the runtime file `ftcli serve` writes for its port (data/local_server.publish, as serve calls it)
        publish(server.url, "per-start-key-0123456789", data_dir=tmp_path / "served", env=env)
        result = CliRunner().invoke(app, ["--base-url", server.url, "models"], env=env)
        assert result.exit_code == 0, result.output
        named = CliRunner().invoke(app, ["models"], env={**env, "OPENAI_BASE_URL": server.url})
        assert named.exit_code == 0, named.output
    assert server.authorizations == ["Bearer per-start-key-0123456789"] * 2


def test_the_current_profile_beats_the_environment(tmp_path: Path) -> None:
    env = _env(tmp_path, GW_KEY="gw-key-0123456789")
    runner = CliRunner()
    with loopback_server() as server:
        added = runner.invoke(
            app, ["profile", "add", "gw", "--base-url", server.url, "--api-key-env", "GW_KEY", "--use"], env=env
        )
        assert added.exit_code == 0, added.output
        result = runner.invoke(app, ["models"], env=env)  # OPENAI_API_KEY is set: the current profile still wins
        assert result.exit_code == 0, result.output
        assert runner.invoke(app, ["profile", "use", "--none"], env=env).exit_code == 0
        to_openai = runner.invoke(app, ["--json", "profile", "list"], env=env)
        assert not any(row["current"] for row in json.loads(to_openai.stdout))
    assert server.authorizations == ["Bearer gw-key-0123456789"]


def test_another_users_listener_gets_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ftcli.service.loopback as loopback

    someone_else = os.getuid() + 4242
    monkeypatch.setattr(loopback, "_proc_owners", lambda port: {someone_else})  # /proc/net/tcp as another uid's
    with loopback_server() as server:
        for args in (["--base-url", server.url, "models"], ["--json", "--base-url", server.url, "models"]):
            result = CliRunner().invoke(app, args, env=_env(tmp_path))
            assert result.exit_code == 2, result.output
            assert f"port {server.port}" in result.stderr and f"uid {someone_else}" in result.stderr
            assert "Traceback" not in result.output
        assert json.loads(result.stderr.strip().splitlines()[-1])["error"]["message"].startswith(f"port {server.port}")
    assert server.authorizations == []  # not one request, with or without a key


def test_a_401_from_a_loopback_url_the_key_was_kept_from_says_why(tmp_path: Path) -> None:
    def refuse(path: str, authorization: str) -> tuple[int, object]:
        return 401, {"error": {"message": "missing or wrong key", "type": "invalid_request_error", "code": None}}

    with loopback_server(refuse) as server:
        result = CliRunner().invoke(app, ["--json", "--base-url", server.url, "models"], env=_env(tmp_path))
        without_env_key = CliRunner().invoke(
            app, ["--json", "--base-url", server.url, "models"], env=_env(tmp_path, OPENAI_API_KEY="")
        )
    assert result.exit_code == 1, result.output
    hint = json.loads(result.stderr.strip().splitlines()[-1])["error"]["hint"]
    assert "loopback" in hint and "OPENAI_BASE_URL" in hint  # not "set OPENAI_API_KEY": it is set, and was kept back
    other = json.loads(without_env_key.stderr.strip().splitlines()[-1])["error"]["hint"]
    assert "loopback" not in other  # nothing was withheld: the usual hint
