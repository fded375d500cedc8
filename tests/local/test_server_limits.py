"""What one client may ask of `ftcli serve` (issue 12): request bodies past their limit are refused before any route
reads them, and a flood of chats can't take every worker thread and hang the other routes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
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


@pytest.mark.parametrize(
    "slots",
    [ChatSlots(running=2, waiting=8), ChatSlots()],
    ids=["2 running and 8 waiting", "the defaults: a batch's rows running"],
)
def test_a_flood_of_chats_leaves_the_other_routes_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slots: ChatSlots
) -> None:
    """40 chats more than the server runs and keeps waiting, whose generation never ends (stubbed: it waits for the
    test): the 40 are told to retry (429), and listing files still answers at once. Without the slots each chat
    would hold one of the 40 worker threads and the listing would wait behind them; the default (a batch's rows, as
    batching answers them together) is still short of that pool."""
    from ftcli.server.batching import MAX_BATCH

    assert ChatSlots().running == MAX_BATCH
    release = threading.Event()

    def held_generation(*_args: Any, **_kwargs: Any) -> Iterator[str]:
        release.wait(60)
        yield "done"

    monkeypatch.setattr(inference, "generate_stream", held_generation)
    monkeypatch.setattr(inference, "count_tokens", lambda *_args: 3)
    monkeypatch.setattr(inference, "count_text_tokens", lambda *_args: 1)
    app = create_app(tmp_path / "data", chat_slots=slots)
    _stub_model(monkeypatch, tmp_path, app)
    held, told_to_retry = slots.running + slots.waiting, 40
    statuses: list[int] = []
    with TestClient(app, base_url=LOCAL) as client:

        def ask() -> None:
            body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "hi"}]}
            statuses.append(client.post("/v1/chat/completions", json=body).status_code)

        askers = [threading.Thread(target=ask) for _ in range(held + told_to_retry)]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + 30
        while len(statuses) < told_to_retry and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses.count(429) == told_to_retry  # past those running and waiting: retry later

        listed: list[int] = []
        lister = threading.Thread(target=lambda: listed.append(client.get("/v1/files").status_code))
        lister.start()
        lister.join(timeout=10)
        assert listed == [200]  # answered while the others are still held

        release.set()
        for asker in askers:
            asker.join(timeout=30)
    assert sorted(statuses) == [200] * held + [429] * told_to_retry


def _stub_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: Any) -> None:
    model = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=2048)), context_length=2048, thinking=False
    )
    monkeypatch.setattr(chat, "_resolve", lambda _store, _name: (tmp_path, None))
    app.state.models = SimpleNamespace(get=lambda _base, _adapter: model, close=lambda: None)


def _latencies_while(client: TestClient, busy: threading.Thread) -> list[float]:
    """How long `GET /v1/models` takes, asked again and again by a second client while `busy` runs."""
    taken = []
    while busy.is_alive():
        start = time.monotonic()
        assert client.get("/v1/models").status_code == 200
        taken.append(time.monotonic() - start)
        time.sleep(0.05)
    return taken


def test_a_huge_prompt_is_refused_by_its_size_before_it_is_tokenized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 15 MB prompt (within the 16 MB body limit) is refused by its length alone: nothing is tokenized (the review
    waited 55 s for its 400, and every other route with it), and the other routes answer meanwhile."""
    tokenized: list[int] = []
    monkeypatch.setattr(inference, "count_tokens", lambda *_args: tokenized.append(1) or 3)
    app = create_app(tmp_path / "data")
    _stub_model(monkeypatch, tmp_path, app)
    huge = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "word " * 3_000_000}]}
    answers: list[Any] = []
    with TestClient(app, base_url=LOCAL) as client:
        asker = threading.Thread(target=lambda: answers.append(client.post("/v1/chat/completions", json=huge)))
        asker.start()
        latencies = _latencies_while(client, asker)
        asker.join()
    error = answers[0].json()["error"]
    assert answers[0].status_code == 400 and error["code"] == "context_length_exceeded", error
    assert "15,000,0" in error["message"] and tokenized == []
    assert max(latencies, default=0) < 1.0, latencies


def test_tokenizing_a_long_prompt_leaves_the_other_routes_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt within the size limit whose tokenizing takes long (here 3 s, blocking, as a tokenizer does) is
    tokenized in a worker thread: `GET /v1/models` from another client answers within a second meanwhile."""
    started = threading.Event()

    def slow_count(*_args: Any) -> int:
        started.set()
        time.sleep(3)
        return 3

    monkeypatch.setattr(inference, "count_tokens", slow_count)
    monkeypatch.setattr(inference, "generate_stream", lambda *_args, **_kwargs: iter(["done"]))
    monkeypatch.setattr(inference, "count_text_tokens", lambda *_args: 1)
    app = create_app(tmp_path / "data")
    _stub_model(monkeypatch, tmp_path, app)
    body = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "long " * 1000}]}
    answers: list[Any] = []
    with TestClient(app, base_url=LOCAL) as client:
        asker = threading.Thread(target=lambda: answers.append(client.post("/v1/chat/completions", json=body)))
        asker.start()
        assert started.wait(30)
        latencies = _latencies_while(client, asker)
        asker.join()
    assert answers[0].status_code == 200, answers[0].text
    assert len(latencies) >= 5 and max(latencies) < 1.0, latencies


def _post_in_chunks(app: Any, path: str, headers: dict[str, str], chunks: Iterator[bytes]) -> tuple[int, Any, int]:
    """POST a body to the ASGI app one chunk per message, as a server passes a streamed body on (the test client
    would read it whole first): (status, JSON answer, bytes the app pulled)."""
    pulled, status, answer = 0, 0, bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        pulled += len(chunk or b"")
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8765),
        "headers": [(b"host", b"127.0.0.1:8765"), *((k.encode(), v.encode()) for k, v in headers.items())],
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    return status, json.loads(answer), pulled


def test_an_upload_part_past_its_uploads_room_is_refused_before_the_form_is_read(tmp_path: Path) -> None:
    """A 1-byte upload, then a 32 MB part streamed without a Content-Length (the review's was 250 MB): refused with
    413 after the server read at most the upload's room and the form's own overhead, not the part."""
    app = create_app(tmp_path / "data")  # --max-upload at its 8 GB default: far above the part
    chunk = b"x" * 65536
    form = "multipart/form-data; boundary=b"

    def part(blocks: int) -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="data"; filename="p"\r\n\r\n'
        for _ in range(blocks):
            yield chunk
        yield b"\r\n--b--\r\n"

    with TestClient(app, base_url=LOCAL) as client:
        upload = {"bytes": 1, "filename": "a.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
        upload_id = client.post("/v1/uploads", json=upload).json()["id"]
        path = f"/v1/uploads/{upload_id}/parts"

        status, answer, pulled = _post_in_chunks(app, path, {"content-type": form}, part(512))
        assert status == 413 and answer["error"]["code"] == "request_too_large", answer
        assert "past the 1 bytes upload" in answer["error"]["message"]
        assert pulled <= 1 + MULTIPART_OVERHEAD + 2 * len(chunk), pulled  # not the 32 MB sent

        declared = {"content-type": form, "content-length": str(2 * MULTIPART_OVERHEAD)}
        status, answer, pulled = _post_in_chunks(app, path, declared, part(2))
        assert status == 413 and pulled == 0  # a declared length past the room: refused before a byte is read

        fits = client.post(path, files={"data": ("p", b"{")})
        assert fits.status_code == 200, fits.text
        assert [p.name for p in (tmp_path / "data" / "uploads" / upload_id).iterdir()] == [fits.json()["id"]]
