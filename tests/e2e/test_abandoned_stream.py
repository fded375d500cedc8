"""A client that leaves mid-answer (issues 12 and 29), streamed or not: its generation stops at the next token, so
the next request is served at once instead of waiting, behind the one generation lock, for tokens nobody reads (and
a server sent SIGTERM doesn't wait for them either). The figures are ratios measured in this run: a whole long
answer's time against the wait of the request after an abandoned one."""

from __future__ import annotations

import time

import httpx2
import pytest

from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]
LONG = {
    "model": "ftcli/tiny",
    "messages": [{"role": "user", "content": "Count."}],
    "max_tokens": 1500,
    "min_tokens": 1500,  # vLLM's extension: no early end, so the answer is long on every machine
}
SHORT = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def long_answer(server: Server) -> float:
    """Seconds a whole long answer takes on this machine now (the model loaded first)."""
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=600) as http:
        assert http.post("/chat/completions", json=SHORT).status_code == 200  # model loaded
        start = time.perf_counter()
        whole = http.post("/chat/completions", json=LONG)
        seconds = time.perf_counter() - start
    assert whole.status_code == 200 and whole.json()["usage"]["completion_tokens"] >= 1400
    return seconds


def _wait_for_the_next_answer(server: Server) -> float:
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=600) as http:
        start = time.perf_counter()
        after = http.post("/chat/completions", json=SHORT)
        waited = time.perf_counter() - start
    assert after.status_code == 200
    return waited


def test_the_next_request_does_not_wait_for_an_abandoned_stream(server: Server, long_answer: float) -> None:
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=600) as http:
        with http.stream("POST", "/chat/completions", json={**LONG, "stream": True}) as stream:
            lines = stream.iter_lines()
            received = [next(lines) for _ in range(6)]  # the answer has begun
        assert any('"content"' in line for line in received)
    waited = _wait_for_the_next_answer(server)
    # without the stop, `waited` is about a whole long answer (the abandoned one finishing first)
    assert waited < long_answer / 4, (waited, long_answer)


def test_the_next_request_does_not_wait_for_an_abandoned_whole_answer(server: Server, long_answer: float) -> None:
    """The client of a non-streamed answer gives up an eighth of the way in (a client's timeout, as the demo's)."""
    with httpx2.Client(base_url=server.url, headers=server.auth) as http, pytest.raises(httpx2.ReadTimeout):
        http.post("/chat/completions", json=LONG, timeout=long_answer / 8)
    waited = _wait_for_the_next_answer(server)
    # without the stop, `waited` is the rest of the abandoned answer: about seven eighths of a whole one
    assert waited < long_answer / 4, (waited, long_answer)
