"""A whole (non-streamed) chat answer stops generating when its client leaves (issue 29): the review's server kept
generating for a client that had given up, held the model, and made uvicorn wait minutes on SIGTERM. Here a real
uvicorn serves the app; generation is a stand-in that makes a token every 10 ms and, like inference.py's, stops at
the next token once its stop flag is set. The client gives up after two seconds of a 4,096-token answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

import uvicorn  # noqa: E402

from ftcli.server import inference  # noqa: E402
from ftcli.server.api import chat  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.limits import ChatSlots  # noqa: E402
from tests.e2e.conftest import free_port  # noqa: E402

pytestmark = [pytest.mark.local]
MAX_TOKENS = 4096


class Generation:
    """The stand-in: counts the tokens it made and remembers whether it was told to stop."""

    def __init__(self) -> None:
        self.tokens, self.stopped, self.finished = 0, False, threading.Event()

    def __call__(
        self, _loaded: Any, _messages: Any, sampling: Any, _tools: Any = None, stop: threading.Event | None = None
    ) -> Iterator[str]:
        try:
            for _ in range(sampling.max_tokens):
                if stop is not None and stop.is_set():
                    self.stopped = True
                    return
                time.sleep(0.01)
                self.tokens += 1
                yield "t"
        finally:
            self.finished.set()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[Generation]]]:
    generations: list[Generation] = []

    def generate(*args: Any, **kwargs: Any) -> Iterator[str]:
        generations.append(Generation())
        return generations[-1](*args, **kwargs)

    model = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8192)), context_length=8192, thinking=False
    )
    monkeypatch.setattr(chat, "_resolve", lambda _store, _name: (tmp_path, None))
    monkeypatch.setattr(inference, "generate_stream", generate)
    monkeypatch.setattr(inference, "count_tokens", lambda *_args: 3)
    monkeypatch.setattr(inference, "count_text_tokens", lambda _loaded, text: len(text))
    app = create_app(tmp_path / "data", chat_slots=ChatSlots(running=1, waiting=4))
    app.state.models = SimpleNamespace(get=lambda _base, _adapter: model, close=lambda: None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", generations
    server.should_exit = True
    thread.join(timeout=30)


def test_an_abandoned_answer_stops_generating(served: tuple[str, list[Generation]]) -> None:
    url, generations = served
    body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "Count."}], "max_tokens": MAX_TOKENS}
    with pytest.raises(httpx2.ReadTimeout):  # the client gives up and closes its connection
        httpx2.post(f"{url}/v1/chat/completions", json=body, timeout=2)
    deadline = time.monotonic() + 20  # a busy machine may start the answer late: it still starts
    while not generations and time.monotonic() < deadline:
        time.sleep(0.01)
    assert generations, "the answer was never started"
    abandoned = generations[0]
    assert abandoned.finished.wait(20), f"still generating: {abandoned.tokens} tokens"
    assert abandoned.stopped and abandoned.tokens < MAX_TOKENS // 4, abandoned.tokens  # about 200 at 10 ms a token

    # its slot (the only one) is free again: the next chat is answered at once, in full
    answer = httpx2.post(f"{url}/v1/chat/completions", json={**body, "max_tokens": 3}, timeout=20)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "ttt"


def test_an_answer_whose_client_stays_is_whole(served: tuple[str, list[Generation]]) -> None:
    url, generations = served
    body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 50}
    answer = httpx2.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 50
    assert not generations[0].stopped  # listening for a disconnect never stops an answer that is read


def test_a_failed_generation_is_a_500_in_the_envelope(
    served: tuple[str, list[Generation]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_args: Any, **_kwargs: Any) -> Iterator[str]:
        raise RuntimeError("CUDA out of memory")
        yield ""

    monkeypatch.setattr(inference, "generate_stream", failing)
    url, _ = served
    body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "Count."}]}
    answer = httpx2.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 500
    assert answer.json()["error"] == {
        "message": "generation failed: RuntimeError",
        "type": "server_error",
        "param": None,
        "code": "generation_failed",
    }
