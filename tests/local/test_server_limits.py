"""What one client may ask of `ftcli serve` (issue 12): request bodies past their limit are refused before any route
reads them, and a flood of chats can't take every worker thread and hang the other routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server import inference  # noqa: E402
from ftcli.server.api import chat  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.limits import MULTIPART_OVERHEAD, ChatSlots  # noqa: E402

pytestmark = [pytest.mark.local]
LOCAL = "http://127.0.0.1:8765"
JSON_LIMIT, UPLOAD_LIMIT = 4096, 10_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(tmp_path / "data", max_upload_bytes=UPLOAD_LIMIT, max_json_bytes=JSON_LIMIT)
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


def _refused_as_too_large(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_json_body_past_the_limit_is_refused(client: TestClient) -> None:
    huge = b'{"model": "ftcli/tiny", "messages": [{"role": "user", "content": "' + b"x" * JSON_LIMIT + b'"}]}'
    headers = {"content-type": "application/json"}
    _refused_as_too_large(client.post("/v1/chat/completions", content=huge, headers=headers))
    _refused_as_too_large(client.post("/v1/fine_tuning/jobs", content=huge, headers=headers))

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield huge[:100]
        yield huge[100:]

    _refused_as_too_large(client.post("/v1/fine_tuning/jobs", content=chunked(), headers=headers))
    small = client.post("/v1/fine_tuning/jobs", json={"model": "ftcli/tiny", "training_file": "file-none"})
    assert small.status_code == 400 and "does not exist" in small.json()["error"]["message"]  # read, then judged


def test_an_upload_past_max_upload_is_refused_before_it_is_spooled(client: TestClient, tmp_path: Path) -> None:
    declared = str(UPLOAD_LIMIT + MULTIPART_OVERHEAD + 1)
    response = client.post(
        "/v1/files",
        content=b"--x\r\n",  # what follows never matters: the declared length alone is refused
        headers={"content-type": "multipart/form-data; boundary=x", "content-length": declared},
    )
    _refused_as_too_large(response)
    within = client.post("/v1/files", files={"file": ("a.jsonl", b"x" * 5000)}, data={"purpose": "fine-tune"})
    assert within.status_code == 200  # larger than the JSON limit, within the upload limit


def test_starlettes_own_errors_come_in_openais_envelope(client: TestClient) -> None:
    missing = client.get("/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.put("/v1/files")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_flood_of_chats_leaves_the_other_routes_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 chats whose generation never ends (stubbed: it waits for the test) against a server of 2 running and 8
    waiting chats: the rest are told to retry (429), and listing files still answers at once. Without the slots
    each chat would hold one of the 40 worker threads and the listing would wait behind them."""
    release = threading.Event()

    def held_generation(*_args: Any, **_kwargs: Any) -> Iterator[str]:
        release.wait(60)
        yield "done"

    model = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=2048)))
    monkeypatch.setattr(chat, "_resolve", lambda _store, _name: (tmp_path, None))
    monkeypatch.setattr(inference, "generate_stream", held_generation)
    monkeypatch.setattr(inference, "count_tokens", lambda *_args: 3)
    monkeypatch.setattr(inference, "count_text_tokens", lambda *_args: 1)
    app = create_app(tmp_path / "data", chat_slots=ChatSlots(running=2, waiting=8))
    app.state.models = SimpleNamespace(get=lambda _base, _adapter: model)
    statuses: list[int] = []
    with TestClient(app, base_url=LOCAL) as client:

        def ask() -> None:
            body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "hi"}]}
            statuses.append(client.post("/v1/chat/completions", json=body).status_code)

        askers = [threading.Thread(target=ask) for _ in range(50)]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + 30
        while len(statuses) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses.count(429) == 40  # past 2 running and 8 waiting: retry later

        listed: list[int] = []
        lister = threading.Thread(target=lambda: listed.append(client.get("/v1/files").status_code))
        lister.start()
        lister.join(timeout=10)
        assert listed == [200]  # answered while ten chats are still held

        release.set()
        for asker in askers:
            asker.join(timeout=30)
    assert sorted(statuses) == [200] * 10 + [429] * 40
