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
    env = {"OPENAI_API_KEY": "sk-env", "LOCAL_KEY": "k-local", "FTCLI_RUNTIME_DIR": str(tmp_path / "runtime")}
    assert store.current_name() is None  # adding a profile doesn't make it current: only --use does
    assert resolve_settings(env=env, store=store).api_key == "sk-env"  # no current profile: the environment
    store.use("local")
    current = resolve_settings(env=env, store=store)  # the current profile beats the environment
    assert (current.base_url, current.api_key, current.profile) == ("http://127.0.0.1:9/v1", "k-local", "local")
    store.clear_current()
    assert store.current_name() is None and resolve_settings(env=env, store=store).api_key == "sk-env"
    chosen = resolve_settings(profile="local", env=env, store=store)
    assert (chosen.base_url, chosen.api_key, chosen.profile) == ("http://127.0.0.1:9/v1", "k-local", "local")
    flagged = resolve_settings(profile="local", base_url="http://127.0.0.1:7/v1", env=env, store=store)
    assert flagged.base_url == "http://127.0.0.1:7/v1"
    assert flagged.api_key is None  # the profile's key was named for port 9, and port 7 is anyone's to take
    given = resolve_settings(profile="local", base_url="http://127.0.0.1:7/v1", api_key="k-flag", env=env, store=store)
    assert given.api_key == "k-flag"  # a key given with the URL goes to it
    with pytest.raises(UsageError, match="no profile named"):
        resolve_settings(profile="nope", env=env, store=store)


def test_an_environment_key_goes_to_a_loopback_url_only_when_named_for_it(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "c.toml")
    runtime = {"FTCLI_RUNTIME_DIR": str(tmp_path / "runtime")}
    env = {"OPENAI_API_KEY": "sk-env-0123456789", **runtime}
    for url in ("http://127.0.0.1:8765/v1", "http://localhost:8765/v1", "http://[::1]:8765/v1", "http://0.0.0.0:80"):
        assert resolve_settings(base_url=url, env=env, store=store).api_key is None, url
    remote = resolve_settings(base_url="https://gateway.example/v1", env=env, store=store)
    assert remote.api_key == "sk-env-0123456789"  # not this machine: the user's gateway, as before
    named = {**env, "OPENAI_BASE_URL": "http://127.0.0.1:8765/v1/"}
    assert resolve_settings(env=named, store=store).api_key == "sk-env-0123456789"
    assert resolve_settings(base_url="http://127.0.0.1:8765/v1", env=named, store=store).api_key == "sk-env-0123456789"
    for other in ("http://127.0.0.1:8766/v1", "http://localhost:8765/v1", "https://127.0.0.1:8765/v1"):
        assert resolve_settings(base_url=other, env=named, store=store).api_key is None, other


def test_the_own_servers_runtime_key_beats_the_environment_but_not_a_profile_named_for_it(tmp_path: Path) -> None:
    from ftcli.data.local_server import publish

    store = ProfileStore(tmp_path / "c.toml")
    runtime = {"FTCLI_RUNTIME_DIR": str(tmp_path / "runtime")}
    url = "http://127.0.0.1:8765/v1"
    publish(url, "per-start-key-0123", data_dir=tmp_path, env=runtime)
    env = {"OPENAI_API_KEY": "sk-env-0123456789", **runtime}
    assert resolve_settings(base_url=url, env=env, store=store).api_key == "per-start-key-0123"
    named = {**env, "OPENAI_BASE_URL": url}  # even an environment key named for the URL: the server's own wins
    assert resolve_settings(env=named, store=store).api_key == "per-start-key-0123"
    store.add(Profile(name="openai", kind="openai", api_key_env="OPENAI_API_KEY"), make_current=True)
    assert resolve_settings(base_url=url, env=env, store=store).api_key == "per-start-key-0123"
    store.add(Profile(name="mine", base_url=url, api_key_env="MINE"), make_current=True)
    assert resolve_settings(env={**env, "MINE": "k-mine-0123"}, store=store).api_key == "k-mine-0123"
    assert resolve_settings(base_url=url, api_key="k-flag", env=env, store=store).api_key == "k-flag"


def test_known_keys_are_every_key_variable_profile_and_runtime_file(tmp_path: Path) -> None:
    from ftcli.data.local_server import publish
    from ftcli.service.settings import known_keys

    store = ProfileStore(tmp_path / "c.toml")
    runtime = {"FTCLI_RUNTIME_DIR": str(tmp_path / "runtime")}
    publish("http://127.0.0.1:8765/v1", "per-start-key", data_dir=tmp_path, env=runtime)
    store.add(Profile(name="gw", base_url="https://gw.example/v1", api_key_env="GW_KEY"))
    store.add(Profile(name="stored", base_url="https://x.example/v1", api_key="stored-key"))
    env = {
        **runtime,
        "OPENAI_API_KEY": "k-openai",
        "AZURE_OPENAI_API_KEY": "k-azure",
        "TOGETHER_API_KEY": "k-together",
        "GW_KEY": "myGateway_k",
        "UNRELATED": "not-a-key",
    }
    assert set(known_keys(env, store)) == {
        "k-openai",
        "k-azure",
        "k-together",
        "myGateway_k",
        "stored-key",
        "per-start-key",
    }
    (tmp_path / "c.toml").write_text("not [ toml")
    assert "k-openai" in known_keys(env, store)  # a broken config still leaves the variables' keys known


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
    cleared = runner.invoke(app, ["profile", "use", "--none", "--json"], env=env)
    assert cleared.exit_code == 0 and __import__("json").loads(cleared.stdout) == {"profile": None, "current": False}
    assert ProfileStore(config).current_name() is None
    assert runner.invoke(app, ["profile", "use"], env=env).exit_code == 2  # a name or --none
    assert runner.invoke(app, ["profile", "use", "openai"], env=env).exit_code == 0
    assert runner.invoke(app, ["profile", "remove", "local"], env=env).exit_code == 0
    missing = runner.invoke(app, ["profile", "use", "local"], env=env)
    assert missing.exit_code == 2 and "no profile named" in missing.stderr


def test_profile_list_shows_names_and_urls_as_written_not_as_markup(tmp_path: Path) -> None:
    env = {"FTCLI_CONFIG_DIR": str(tmp_path), "COLUMNS": "200"}
    runner = CliRunner()
    odd = "http://127.0.0.1:9/v1?[/x][link=http://evil]"
    assert runner.invoke(app, ["profile", "add", "odd", "--base-url", odd], env=env).exit_code == 0
    listed = runner.invoke(app, ["profile", "list"], env=env)
    assert listed.exit_code == 0 and "Traceback" not in listed.output, listed.output
    assert odd in listed.stdout


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
