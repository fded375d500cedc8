"""The fault proxy itself: stopping it while a client still holds a connection leaves nothing behind (an unclosed
socket surfaces later as a ResourceWarning in whichever test happens to be running)."""

from __future__ import annotations

import gc
import logging
import socket
import sys
import time

import pytest

from tests.faults.proxy import FaultProxy


def test_stopping_with_a_half_sent_request_closes_every_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook_args: unraisable.append(repr(hook_args.exc_value)))
    proxy = FaultProxy("http://127.0.0.1:9").start()
    with (
        caplog.at_level(logging.ERROR, logger="asyncio"),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client,
    ):
        client.sendall(b"GET /v1/models HTTP/1.1\r\n")  # the head never ends: the proxy's handler waits
        deadline = time.monotonic() + 5
        while not proxy.handling and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.handling == 1
        proxy.stop()
        assert client.recv(1) == b"", "the proxy closed its end"
    gc.collect()
    assert unraisable == []
    assert [r.getMessage() for r in caplog.records] == []
