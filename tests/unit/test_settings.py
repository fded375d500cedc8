from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service.client import make_client
from ftcli.service.errors import UsageError, redact
from ftcli.service.profiles import Profile, ProfileStore
from ftcli.service.settings import resolve_settings


def test_env_openai_and_azure(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "c.toml")
    s = resolve_settings(env={"OPENAI_API_KEY": "sk-x", "OPENAI_ORG_ID": "org"}, store=store)
    assert (s.kind, s.api_key, s.organization, s.base_url) == ("openai", "sk-x", "org", None)
    azure = resolve_settings(
        env={
            "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
            "AZURE_OPENAI_API_KEY": "k",
            "OPENAI_API_VERSION": "2024-10-21",
        },
        store=store,
    )
    assert (azure.kind, azure.api_version) == ("azure", "2024-10-21")
    client = make_client(azure)
    assert type(client).__name__ == "AzureOpenAI"


def test_precedence_flags_profile_env(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "c.toml")
    store.add(Profile(name="local", base_url="http://127.0.0.1:9/v1", api_key_env="LOCAL_KEY"))
    env = {"OPENAI_API_KEY": "sk-env", "LOCAL_KEY": "k-local"}
    assert resolve_settings(env=env, store=store).api_key == "sk-env"  # env beats the current profile
    chosen = resolve_settings(profile="local", env=env, store=store)
    assert (chosen.base_url, chosen.api_key, chosen.profile) == ("http://127.0.0.1:9/v1", "k-local", "local")
    flagged = resolve_settings(profile="local", base_url="http://127.0.0.1:7/v1", env=env, store=store)
    assert flagged.base_url == "http://127.0.0.1:7/v1"
    with pytest.raises(UsageError, match="no profile named"):
        resolve_settings(profile="nope", env=env, store=store)


def test_settings_never_show_the_key() -> None:
    settings = resolve_settings(env={"OPENAI_API_KEY": "sk-secret-123456"}, store=ProfileStore(Path("/nonexistent")))
    assert "sk-secret" not in repr(settings) and "sk-secret" not in str(settings.describe())
    assert redact("Incorrect API key provided: sk-proj-abc***********wxyz.") == "Incorrect API key provided: ***."


def test_profile_commands_and_file_mode(tmp_path: Path) -> None:
    env = {"FTCLI_CONFIG_DIR": str(tmp_path)}
    runner = CliRunner()
    add = runner.invoke(app, ["profile", "add", "local", "--base-url", "http://127.0.0.1:8765/v1", "--use"], env=env)
    assert add.exit_code == 0, add.output
    config = tmp_path / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    runner.invoke(app, ["profile", "add", "openai", "--kind", "openai", "--api-key-env", "OPENAI_API_KEY"], env=env)
    listed = runner.invoke(app, ["profile", "list", "--json"], env=env)
    assert [(p["name"], p["current"]) for p in __import__("json").loads(listed.stdout)] == [
        ("local", True),
        ("openai", False),
    ]
    assert runner.invoke(app, ["profile", "use", "openai"], env=env).exit_code == 0
    assert runner.invoke(app, ["profile", "remove", "local"], env=env).exit_code == 0
    missing = runner.invoke(app, ["profile", "use", "local"], env=env)
    assert missing.exit_code == 2 and "no profile named" in missing.stderr


def test_no_key_for_openai_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["status"], env={"FTCLI_CONFIG_DIR": str(tmp_path), "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    )
    assert result.exit_code == 2 and "no API key" in result.stderr and "Traceback" not in result.output


def test_an_empty_openai_base_url_variable_means_openai(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ftcli.service.client import make_client
    from ftcli.service.settings import resolve_settings

    monkeypatch.setenv("OPENAI_BASE_URL", "")
    settings = resolve_settings(
        env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": ""}, store=ProfileStore(Path("/nonexistent"))
    )
    with make_client(settings) as client:
        assert str(client.base_url) == "https://api.openai.com/v1/"


def test_together_with_its_key_alone_or_through_a_profile(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "c.toml")
    env = {"TOGETHER_API_KEY": "tgp_v1_unitTestKey", "OPENAI_API_KEY": "sk-other"}
    alone = resolve_settings(profile="together", env=env, store=store)  # `--backend together`, no such profile
    assert (alone.kind, alone.base_url, alone.api_key) == (
        "together",
        "https://api.together.xyz/v1",
        env["TOGETHER_API_KEY"],
    )
    store.add(Profile(name="tg", kind="together", api_key_env="MY_TG"))
    named = resolve_settings(profile="tg", env={**env, "MY_TG": "tgp_v1_fromProfile"}, store=store)
    assert (named.kind, named.base_url, named.api_key) == (
        "together",
        "https://api.together.xyz/v1",
        "tgp_v1_fromProfile",
    )
    with pytest.raises(UsageError, match="no API key for Together"):
        make_client(resolve_settings(profile="together", env={}, store=store))
    assert "tgp_v1_unitTestKey" not in redact("rejected tgp_v1_unitTestKey")
