"""A client that leaves mid-stream (issue 12): its generation stops at the next token, so the next request is served
at once instead of waiting, behind the one generation lock, for tokens nobody reads. The figures are a ratio
measured in this run: a whole long answer's time against the wait of the request after an abandoned one."""

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


def test_the_next_request_does_not_wait_for_an_abandoned_stream(server: Server) -> None:
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=300) as http:
        assert http.post("/chat/completions", json=SHORT).status_code == 200  # model loaded
        start = time.perf_counter()
        whole = http.post("/chat/completions", json=LONG)
        long_answer = time.perf_counter() - start
        assert whole.status_code == 200 and whole.json()["usage"]["completion_tokens"] >= 1400

        with http.stream("POST", "/chat/completions", json={**LONG, "stream": True}) as stream:
            lines = stream.iter_lines()
            received = [next(lines) for _ in range(6)]  # the answer has begun
        assert any('"content"' in line for line in received)
        start = time.perf_counter()
        after = http.post("/chat/completions", json=SHORT)
        waited = time.perf_counter() - start
    assert after.status_code == 200
    # without the stop, `waited` is about a whole long answer (the abandoned one finishing first)
    assert waited < long_answer / 4, (waited, long_answer)
