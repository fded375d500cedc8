"""Attacks on a running `ftcli serve` by a client that can reach it (issue 12), each refused: bodies too large to
hold, folders of the machine named as models, and deleted data left on the disk."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx2
import pytest

from ftcli.data.local_server import runtime_dir
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.local]
SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture
def http(server: Server) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=60) as client:
        yield client


def test_json_bodies_past_the_limit_are_refused_before_they_are_read(http: httpx2.Client, server: Server) -> None:
    headers = {"content-type": "application/json"}
    port = urlsplit(server.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:  # only the headers: the length is enough
        raw.sendall(
            f"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {server.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {SIXTEEN_MIB + 1}\r\n\r\n{{".encode()
        )
        answer = b""
        while b"request_too_large" not in answer and (chunk := raw.recv(65536)):  # headers and body may come apart
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"request_too_large" in answer  # answered without the body

    def chunked() -> Iterator[bytes]:  # no length: counted as it arrives
        yield b'{"model": "ftcli/tiny", "messages": [{"role": "user", "content": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    counted = http.post("/chat/completions", content=chunked(), headers=headers)
    assert counted.status_code == 413 and counted.json()["error"]["code"] == "request_too_large"
    assert http.get("/models").status_code == 200  # and the server goes on


def test_a_client_cant_make_the_server_read_a_folder_of_the_machine(http: httpx2.Client, server: Server) -> None:
    for folder in ("/etc", str(server.data_dir), "~/.ssh", "../../../../etc"):
        chat = http.post("/chat/completions", json={"model": folder, "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 404 and "model roots" in chat.json()["error"]["message"], chat.text
        job = http.post("/fine_tuning/jobs", json={"model": folder, "training_file": "file-x"})
        assert job.status_code == 400 and job.json()["error"]["code"] == "model_not_available"


def test_a_deleted_file_leaves_no_bytes_on_the_disk(http: httpx2.Client, server: Server) -> None:
    secret = b'{"messages": [{"role": "user", "content": "my one secret line"}]}\n'

    def upload() -> str:
        response = http.post("/files", files={"file": ("s.jsonl", secret)}, data={"purpose": "fine-tune"})
        assert response.status_code == 200
        return str(response.json()["id"])

    def on_disk() -> bool:
        return any(p.read_bytes() == secret for p in (server.data_dir / "blobs").iterdir() if p.is_file())

    first, second = upload(), upload()
    assert on_disk()
    assert http.delete(f"/files/{first}").json()["deleted"] is True
    assert on_disk()  # the second file still holds the same bytes
    http.delete(f"/files/{second}")
    assert not on_disk()


def test_serve_open_never_puts_the_key_on_a_command_line(tmp_path: Path) -> None:
    """`serve --open` (issue 29.4): the browser was started with `…/#token=KEY` in its argv, which every user sees in
    `ps`. Now its argv holds the path of a 0600 file in the private runtime folder that redirects to the page."""
    record = tmp_path / "browser-argv"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > "{record}.tmp" && mv "{record}.tmp" "{record}"\n')
    browser.chmod(0o755)
    server = start_server(tmp_path / "open", env={"BROWSER": str(browser)}, args=("--open",))
    try:
        deadline = time.monotonic() + 30
        while not record.exists():
            assert time.monotonic() < deadline, "the browser was not started"
            time.sleep(0.1)
        argv = record.read_text().splitlines()
        assert not any(server.key in arg for arg in argv), argv
        assert len(argv) == 2 and argv[1].startswith("file://"), argv
        opened = Path(unquote(urlsplit(argv[1]).path))
        assert opened.parent == runtime_dir() and opened.stat().st_mode & 0o777 == 0o600
        page = f"http://127.0.0.1:{urlsplit(server.url).port}/#token={server.key}"
        text = opened.read_text()
        assert f'<meta http-equiv="refresh" content="0;url={page}">' in text
        assert f'window.location.replace("{page}")' in text
    finally:
        stop_server(server)
    assert not opened.exists()  # removed with the server's runtime file
