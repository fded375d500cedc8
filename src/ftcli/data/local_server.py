"""Where a running `ftcli serve` leaves its address and its key for this user's own clients, as Jupyter does with
its runtime files: one file per port, 0600, in a 0700 folder. `ftcli serve` makes a new random key at every start
(unless given one); ftcli's commands find it here, so nothing changes for the user, while another user of the
machine (who can reach 127.0.0.1 too, but can't read this folder) gets 401.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ftcli.data.atomic import write_atomic

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("FTCLI_RUNTIME_DIR"):
        return Path(env["FTCLI_RUNTIME_DIR"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "ftcli"
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ftcli" / "runtime"


def _file(port: int, env: Mapping[str, str] | None) -> Path:
    return runtime_dir(env) / f"server-{port}.json"


def publish(base_url: str, api_key: str, *, data_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Write the server's runtime file (atomically, never readable by others); returns its path."""
    port = _port(base_url)
    if port is None:
        raise ValueError(f"{base_url!r} names no port")
    folder = runtime_dir(env)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    record = {"base_url": base_url, "api_key": api_key, "pid": os.getpid(), "data_dir": str(data_dir)}
    target = _file(port, env)
    write_atomic(target, json.dumps(record).encode("utf-8"), private=True)
    return target


def withdraw(path: Path) -> None:
    """Remove the runtime file at shutdown (only if it is still this process's: a newer server may own the port)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def key_for(base_url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The key of the `ftcli serve` this user runs at `base_url` (a loopback URL), if it left one."""
    record = announcement(base_url, env)
    key = record.get("api_key") if record else None
    return key if isinstance(key, str) and key else None


def announcement(base_url: str | None, env: Mapping[str, str] | None = None) -> dict[str, object] | None:
    """The runtime file of the server at `base_url` on this machine: base_url, api_key, pid, data_dir."""
    host = urlsplit(base_url or "").hostname or ""
    port = _port(base_url or "")
    if port is None or not (host in LOOPBACK or host.startswith("127.")):
        return None
    try:
        record = json.loads(_file(port, env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _port(base_url: str) -> int | None:
    try:
        return urlsplit(base_url).port
    except ValueError:
        return None
