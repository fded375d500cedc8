"""The runtime file `ftcli serve` leaves for this user's clients: private, found by port, and its key never handed
to a server that isn't on this machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ftcli.data.local_server import announcement, key_for, publish, runtime_dir, withdraw
from ftcli.service.client import LOCAL_PLACEHOLDER_KEY, make_client
from ftcli.service.settings import Settings


def test_published_keys_are_private_and_found_by_port(tmp_path: Path) -> None:
    env = {"FTCLI_RUNTIME_DIR": str(tmp_path / "runtime")}
    path = publish("http://127.0.0.1:8765/v1", "per-start-key", data_dir=tmp_path / "data", env=env)
    assert path.parent == runtime_dir(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for url in ("http://127.0.0.1:8765/v1", "http://localhost:8765/v1", "http://[::1]:8765/v1/"):
        assert key_for(url, env) == "per-start-key"
    assert announcement("http://127.0.0.1:8765/v1", env) == {
        "base_url": "http://127.0.0.1:8765/v1",
        "api_key": "per-start-key",
        "pid": os.getpid(),
        "data_dir": str(tmp_path / "data"),
    }
    for elsewhere in ("http://127.0.0.1:9999/v1", "http://attacker.example:8765/v1", "https://10.0.0.5:8765/v1", None):
        assert key_for(elsewhere, env) is None  # another port, or not this machine: the key is never sent there
    withdraw(path)
    assert key_for("http://127.0.0.1:8765/v1", env) is None


def test_a_newer_servers_file_is_not_withdrawn_by_an_older_one(tmp_path: Path) -> None:
    env = {"FTCLI_RUNTIME_DIR": str(tmp_path)}
    path = publish("http://127.0.0.1:8765/v1", "k", data_dir=tmp_path, env=env)
    path.write_text(path.read_text().replace(f'"pid": {os.getpid()}', '"pid": 1'))
    withdraw(path)
    assert path.exists()


def test_the_client_sends_the_local_servers_key_only_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCLI_RUNTIME_DIR", str(tmp_path))
    publish("http://127.0.0.1:8765/v1", "per-start-key", data_dir=tmp_path)
    local = make_client(Settings(kind="compatible", base_url="http://127.0.0.1:8765/v1"))
    assert local.api_key == "per-start-key"
    given = make_client(Settings(kind="compatible", base_url="http://127.0.0.1:8765/v1", api_key="users-own"))
    assert given.api_key == "users-own"  # a key the user gave wins
    remote = make_client(Settings(kind="compatible", base_url="http://gpu-box.example:8765/v1"))
    assert remote.api_key == LOCAL_PLACEHOLDER_KEY
