"""Where a running `ftcli serve` leaves its address and its key for this user's own clients, as Jupyter does with
its runtime files: one file per port, 0600, in a 0700 folder. `ftcli serve` makes a new random key at every start
(unless given one); ftcli's commands find it here, so nothing changes for the user, while another user of the
machine (who can reach 127.0.0.1 too, but can't read this folder) gets 401.

Loopback is not private on a shared machine: another user can listen on a port first. `listener_uids` reads who
owns the listening sockets of a port (Linux's /proc/net/tcp and tcp6), so a client can refuse to talk to another
user's server before it sends a key or any data.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ftcli.data.atomic import write_atomic

PROC_NET = Path("/proc/net")
_TCP_LISTEN = "0A"  # the `st` column of /proc/net/tcp for a listening socket (include/net/tcp_states.h)


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
    port = _port(base_url or "")
    if port is None or not is_loopback_url(base_url):
        return None
    try:
        record = json.loads(_file(port, env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def published_keys(env: Mapping[str, str] | None = None) -> list[str]:
    """The keys of every runtime file in this user's folder (ftcli redacts each from what it prints)."""
    keys: list[str] = []
    with contextlib.suppress(OSError):
        for path in sorted(runtime_dir(env).glob("server-*.json")):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                key = json.loads(path.read_text(encoding="utf-8")).get("api_key")
                if isinstance(key, str) and key:
                    keys.append(key)
    return keys


def is_loopback_url(url: str | None) -> bool:
    """Whether `url` names this machine: localhost, the machine's own host name, a 127/8 or ::1 address in any form
    the system's resolver takes (`127.1`, `2130706433`, `0x7f000001`: inet_aton's), or the unspecified address
    (0.0.0.0 and :: reach local listeners too). Other names that resolve to loopback through /etc/hosts are not
    looked up (that would ask DNS for every remote URL)."""
    try:
        host = (urlsplit(url or "").hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost") or host == socket.gethostname().lower():
        return True
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the short and numeric forms of IPv4 that the resolver (and so the HTTP client) connects to
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def listener_uids(port: int, net_dir: Path = PROC_NET) -> set[int] | None:
    """The uids that own a socket listening on `port` on a loopback or wildcard address, from Linux's
    /proc/net/tcp and tcp6; None where those files don't exist (not Linux): the caller can't tell."""
    tables = [net_dir / "tcp", net_dir / "tcp6"]
    if not any(table.exists() for table in tables):
        return None
    owners: set[int] = set()
    for table in tables:
        try:
            rows = table.read_text(encoding="ascii", errors="replace").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            if len(columns) < 8 or columns[3] != _TCP_LISTEN:
                continue
            address, _, port_hex = columns[1].rpartition(":")
            with contextlib.suppress(ValueError):
                if int(port_hex, 16) == port and _reaches_loopback(address):
                    owners.add(int(columns[7]))
    return owners


def _reaches_loopback(hex_address: str) -> bool:
    """A /proc/net address (hex, each 32-bit word in host byte order) on loopback or the wildcard address."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _port(base_url: str) -> int | None:
    try:
        return urlsplit(base_url).port
    except ValueError:
        return None
