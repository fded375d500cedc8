"""The browser guard's rules (server/guard.py) on their own; tests/e2e/test_browser_attacks.py runs the attacks."""

from __future__ import annotations

from ftcli.server.guard import BrowserGuard, host_name, is_json


def test_host_names_with_ports_and_brackets() -> None:
    assert host_name("LocalHost:8765") == "localhost" and host_name("[::1]:8765") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("::1") == "::1"


def test_loopback_server_takes_its_own_names_only() -> None:
    guard = BrowserGuard("127.0.0.1")
    assert guard.refusal("127.0.0.1:8765", None) is None and guard.refusal("localhost:8765", None) is None
    assert guard.refusal("[::1]:8765", "http://[::1]:8765") is None  # its own page
    assert guard.refusal("attacker.example:8765", None) is not None  # DNS rebinding
    assert guard.refusal(None, None) is not None
    assert guard.refusal("127.0.0.1:8765", "https://evil.example") is not None
    assert guard.refusal("127.0.0.1:8765", "http://localhost:8765") is not None  # another origin, even local
    assert guard.refusal("127.0.0.1:8765", "null") is not None


def test_a_configured_name_and_every_interface() -> None:
    assert BrowserGuard("ftcli.lan").refusal("ftcli.lan:8765", None) is None
    # on every interface (which needs an API key) any name may reach it; pages of other origins still may not
    everywhere = BrowserGuard("0.0.0.0")
    assert everywhere.refusal("10.0.0.5:8765", None) is None
    assert everywhere.refusal("10.0.0.5:8765", "https://evil.example") is not None


def test_json_content_types() -> None:
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    assert not is_json("text/plain") and not is_json(None) and not is_json("application/jsonp")
