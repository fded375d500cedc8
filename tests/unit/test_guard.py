"""The browser guard's rules (server/guard.py) on their own; tests/e2e/test_browser_attacks.py runs the attacks."""

from __future__ import annotations

from ftcli.server.guard import BrowserGuard, FailedKeys, host_name, is_json, is_loopback


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]", "LocalHost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "ftcli.lan", ""))


def test_failed_keys_are_free_a_few_times_then_wait_twice_as_long_each_time() -> None:
    clock = Clock()
    keys = FailedKeys(free=3, longest=10, clock=clock)
    for _ in range(3):
        assert keys.retry_after("10.0.0.9") is None
        keys.failed("10.0.0.9")
    assert keys.retry_after("10.0.0.9") is None  # three failures: still free
    waits = []
    for _ in range(6):
        keys.failed("10.0.0.9")
        waits.append(keys.retry_after("10.0.0.9"))
        clock.now += 100  # each wait over, but within the time failures are remembered
    assert waits == [1, 2, 4, 8, 10, 10]  # doubling, up to `longest`
    assert keys.retry_after("10.0.0.10") is None  # another address is not slowed down
    keys.succeeded("10.0.0.9")
    keys.failed("10.0.0.9")
    assert keys.retry_after("10.0.0.9") is None  # a right key cleared the count


def test_failures_are_forgotten_after_a_quiet_while() -> None:
    clock = Clock()
    keys = FailedKeys(free=1, forget=60, clock=clock)
    keys.failed("10.0.0.9")
    keys.failed("10.0.0.9")
    assert keys.retry_after("10.0.0.9") == 1
    clock.now += 120
    keys.failed("10.0.0.9")  # the first failure of a new round: free again
    assert keys.retry_after("10.0.0.9") is None


def test_memory_is_bounded_and_ipv6_clients_count_by_their_64() -> None:
    keys = FailedKeys(free=0, capacity=100, clock=Clock())
    for n in range(10_000):
        keys.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert keys.tracked == 100  # the least recently seen are forgotten
    keys.failed("2001:db8:1:2::1")
    assert keys.retry_after("2001:db8:1:2:ffff::9") == 1  # the same /64: one machine, one count
    assert keys.retry_after("2001:db8:1:3::1") is None
    keys.failed("::ffff:192.0.2.7")
    assert keys.retry_after("192.0.2.7") == 1  # IPv4 mapped into IPv6 is the same client
