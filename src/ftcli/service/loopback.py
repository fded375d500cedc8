"""Before ftcli sends anything (a key, a training file, a prompt) to a server on this machine: is it the user's own?

On a shared machine 127.0.0.1 is reachable by every user, and any of them can take a free port first. On Linux the
owner of a listening socket is in /proc/net/tcp and tcp6; a listener of another uid is refused (exit 2) before the
first byte is sent. Root's listeners pass (root can read the user's keys anyway: a Docker port, a system service),
and so do those of the uids the user names in `FTCLI_TRUSTED_UIDS` (comma-separated: a shared Ollama, say). Where
/proc is absent (macOS, Windows) the check is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ftcli.data.local_server import PROC_NET, is_loopback_url, listener_uids
from ftcli.service.errors import UsageError

TRUSTED_UIDS_ENV = "FTCLI_TRUSTED_UIDS"
ROOT_UID = 0
_DEFAULT_PORTS = {"http": 80, "https": 443}


def refuse_foreign_listener(
    url: str | None,
    *,
    owners: Callable[[int], set[int] | None] | None = None,
    my_uid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Raise UsageError if `url` is on loopback and the socket listening on its port belongs to another user.
    `owners` (port -> uids, None where unknown) and `my_uid` are for tests; by default /proc/net and os.getuid()."""
    if not is_loopback_url(url):
        return
    parts = urlsplit(url or "")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return  # a malformed port: nothing can connect to it
    if port is None or (my_uid is None and not hasattr(os, "getuid")):  # Windows: no uids to compare
        return
    me: int = my_uid if my_uid is not None else os.getuid()
    found = (owners or _proc_owners)(port)
    trusted = {me, ROOT_UID, *_trusted_uids(os.environ if env is None else env)}
    foreign = sorted((found or set()) - trusted)
    if foreign:
        raise UsageError(
            f"port {port} on this machine is held by another user (uid {foreign[0]}), not by you (uid {me}): "
            "ftcli sent it nothing, no key and no data",
            hint=f"start your own server on another port, or, if you trust uid {foreign[0]}, "
            f"set {TRUSTED_UIDS_ENV}={foreign[0]}",
        )


def _proc_owners(port: int) -> set[int] | None:
    return listener_uids(port, PROC_NET)


def _trusted_uids(env: Mapping[str, str]) -> set[int]:
    return {int(part) for part in env.get(TRUSTED_UIDS_ENV, "").split(",") if part.strip().isdigit()}
