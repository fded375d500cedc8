"""What keeps the web pages a user opens from driving a server on their machine.

A page can make the browser send requests to 127.0.0.1, and with DNS rebinding (a name of the attacker's that
resolves to 127.0.0.1) it can even read the answers. Neither works here: a request must name this server in `Host`
(a rebound name is refused), a browser's cross-site request carries an `Origin` that is not this server's (refused),
and JSON routes take only `application/json`, a type no page can send cross-site without asking first (CORS
preflight, which this server never grants). Programs (the SDK, curl) send no `Origin` and are unaffected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
ALL_INTERFACES = frozenset({"0.0.0.0", "::", ""})


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
