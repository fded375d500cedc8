"""What keeps the web pages a user opens from driving a server on their machine.

A page can make the browser send requests to 127.0.0.1, and with DNS rebinding (a name of the attacker's that
resolves to 127.0.0.1) it can even read the answers. Neither works here: a request must name this server in `Host`
(a rebound name is refused), a browser's cross-site request carries an `Origin` that is not this server's (refused),
and JSON routes take only `application/json`, a type no page can send cross-site without asking first (CORS
preflight, which this server never grants). Programs (the SDK, curl) send no `Origin` and are unaffected.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
ALL_INTERFACES = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """`127.0.0.1`, any 127/8 address, `::1` or `localhost`: only this machine can connect."""
    name = host_name(host) if host.startswith("[") else host.lower()
    try:
        return name in LOOPBACK_NAMES or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(authority: str) -> str:
    """`[::1]:8765` → `::1`, `localhost:8765` → `localhost` (lower-cased)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


class BrowserGuard:
    def __init__(self, bound_host: str) -> None:
        bound = host_name(bound_host) if bound_host.startswith("[") else bound_host.lower()
        # Bound to every interface (only ever with an API key): any name may reach it, and the key protects it.
        self.any_host = bound in ALL_INTERFACES
        self.hosts = LOOPBACK_NAMES | {bound}

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None when it may pass."""
        if not self.any_host and (host is None or host_name(host) not in self.hosts):
            return f"Host {host!r} is not this server's name (DNS rebinding is refused)"
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.scheme not in ("http", "https") or host is None:
                return f"requests from the page at {origin!r} are refused"
            if parts.netloc.lower() != host.strip().lower():
                return f"requests from the page at {origin!r} are refused: only this server's own page may call it"
        return None


JSON_TYPE = "application/json"


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == JSON_TYPE


class FailedKeys:
    """Slows down guessing of the API key on a server other machines can reach (`serve --host 0.0.0.0`): each
    client address (an IPv6 client by its /64, which one machine usually owns whole) may fail `free` times; after
    that it must wait, twice as long after each further failure (up to `longest` seconds), and a request it sends
    meanwhile gets 429 with Retry-After without its key being looked at. A right key clears the address, and so do
    `forget` seconds without a failure. At most `capacity` addresses are remembered (the least recently seen are
    forgotten first), so a flood of addresses can't grow the server's memory."""

    def __init__(
        self,
        *,
        free: int = 5,
        longest: float = 300.0,
        forget: float = 900.0,
        capacity: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.longest, self.forget, self.capacity, self.clock = free, longest, forget, capacity, clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address → (failures, blocked until)
        self._lock = threading.Lock()

    def retry_after(self, client: str | None) -> int | None:
        """Seconds this client must still wait before its key is checked again, or None when it may try now."""
        with self._lock:
            entry = self._failures.get(_address(client))
        if entry is None:
            return None
        wait = entry[1] - self.clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, client: str | None) -> None:
        address = _address(client)
        with self._lock:
            failures, blocked_until = self._failures.pop(address, (0, 0.0))
            failures = 1 if self.clock() - blocked_until > self.forget else failures + 1
            over = failures - self.free
            wait = min(self.longest, 2.0 ** (over - 1)) if over > 0 else 0.0
            self._failures[address] = (failures, self.clock() + wait)
            while len(self._failures) > self.capacity:
                self._failures.popitem(last=False)

    def succeeded(self, client: str | None) -> None:
        with self._lock:
            self._failures.pop(_address(client), None)

    @property
    def tracked(self) -> int:
        """How many addresses are remembered."""
        return len(self._failures)


def _address(client: str | None) -> str:
    """The key a client's failures are counted under: its IPv4 address (also when mapped into IPv6), or its IPv6
    /64."""
    try:
        parsed = ipaddress.ip_address(client or "")
    except ValueError:
        return client or "?"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)
