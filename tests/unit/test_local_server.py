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


# /proc/net/tcp and tcp6 as Linux writes them (addresses in hex, each 32-bit word in host byte order)
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4242        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000  5555        0 2 1 0 20 4 30 10 -1
   2: 0501A8C0:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  6666        0 3 1 0 100 0 0 10 0
   3: 00000000:1F93 00000000:0000 0A 00000000:00000000 00:00000000 00000000  7777        0 4 1 0 100 0 0 10 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F94 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  8888        0 5 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F95 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  9999        0 6 1 0 100 0 0 10 0
"""  # noqa: E501 (the kernel's line)


def test_listener_owners_come_from_the_listen_rows_on_loopback_or_any_address(tmp_path: Path) -> None:
    import sys

    from ftcli.data.local_server import listener_uids

    if sys.byteorder != "little":
        pytest.fail("the sample rows are those of a little-endian machine")
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    assert listener_uids(8080, tmp_path) == {4242}  # 127.0.0.1:8080, LISTEN
    assert listener_uids(8081, tmp_path) == set()  # a connection, not a listener
    assert listener_uids(8082, tmp_path) == set()  # 192.168.1.5: not what a loopback URL reaches
    assert listener_uids(8083, tmp_path) == {7777}  # 0.0.0.0 takes loopback connections too
    assert listener_uids(8084, tmp_path) == {8888}  # [::1]
    assert listener_uids(8085, tmp_path) == {9999}  # [::ffff:127.0.0.1]
    assert listener_uids(8080, tmp_path / "no-proc") is None  # not Linux: unknown, not "nobody"


def test_another_users_listener_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    from ftcli.service.errors import UsageError
    from ftcli.service.loopback import refuse_foreign_listener

    asked: list[int] = []

    def owners(port: int) -> set[int]:
        asked.append(port)
        return {4242}

    with pytest.raises(UsageError, match=r"port 8765 .* another user \(uid 4242\), not by you \(uid 1000\)") as info:
        refuse_foreign_listener("http://127.0.0.1:8765/v1", owners=owners, my_uid=1000, env={})
    assert info.value.exit_code == 2 and "FTCLI_TRUSTED_UIDS=4242" in (info.value.hint or "")
    with pytest.raises(UsageError, match="port 80 "):
        refuse_foreign_listener("http://localhost/v1", owners=owners, my_uid=1000, env={})
    refuse_foreign_listener("http://127.0.0.1:8765/v1", owners=owners, my_uid=4242, env={})  # the user's own
    refuse_foreign_listener("http://127.0.0.1:8765/v1", owners=lambda _: {0}, my_uid=1000, env={})  # root's
    refuse_foreign_listener("http://127.0.0.1:8765/v1", owners=lambda _: None, my_uid=1000, env={})  # no /proc
    trusted = {"FTCLI_TRUSTED_UIDS": "17, 4242"}
    refuse_foreign_listener("http://127.0.0.1:8765/v1", owners=owners, my_uid=1000, env=trusted)
    asked.clear()
    refuse_foreign_listener("https://api.openai.com/v1", owners=owners, my_uid=1000, env={})
    assert asked == []  # not this machine: no uids to compare


def test_make_client_refuses_another_users_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import ftcli.service.loopback as loopback
    from ftcli.service.errors import UsageError

    monkeypatch.setattr(loopback, "_proc_owners", lambda port: {os.getuid() + 4242})
    with pytest.raises(UsageError, match="another user"):
        make_client(Settings(kind="compatible", base_url="http://127.0.0.1:8765/v1", api_key="users-own"))
    make_client(Settings(kind="compatible", base_url="http://gpu-box.example:8765/v1"))  # not loopback: no check


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux only: /proc/net/tcp")
def test_the_users_own_listener_passes_the_real_proc_check() -> None:
    import socket

    from ftcli.data.local_server import listener_uids
    from ftcli.service.errors import UsageError
    from ftcli.service.loopback import refuse_foreign_listener

    for family, host, template in (
        (socket.AF_INET, "127.0.0.1", "http://127.0.0.1:{}/v1"),
        (socket.AF_INET6, "::1", "http://[::1]:{}/v1"),
    ):
        with socket.socket(family) as listener:
            try:
                listener.bind((host, 0))
            except OSError:
                assert family == socket.AF_INET6, "IPv4 loopback must bind"
                continue  # a machine without IPv6
            listener.listen()
            url = template.format(listener.getsockname()[1])
            assert listener_uids(listener.getsockname()[1]) == {os.getuid()}
            refuse_foreign_listener(url)  # this user's own: no error
            someone_else = os.getuid() + 4242
            if os.getuid() == 0:
                refuse_foreign_listener(url, my_uid=someone_else, env={})  # root's listener: anyone may use it
            else:
                with pytest.raises(UsageError, match=f"uid {os.getuid()}"):
                    refuse_foreign_listener(url, my_uid=someone_else, env={})
