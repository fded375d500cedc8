"""`ftcli serve --json`: one document with the URLs and the data folder, written once the server listens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.local]


def test_serve_json_announces_itself_once_listening(tmp_path: Path) -> None:
    port, data_dir = free_port(), tmp_path / "data"
    command = [sys.executable, "-m", "ftcli", "serve", "--port", str(port), "--data-dir", str(data_dir), "--json"]
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            line = process.stdout.readline()
            assert line, (tmp_path / "serve.log").read_text()
            lines.append(line)
        started = json.loads("".join(lines))
        assert started == {
            "base_url": f"http://127.0.0.1:{port}/v1",
            "web": f"http://127.0.0.1:{port}/",
            "data_dir": str(data_dir),
        }
        assert httpx2.get(f"{started['base_url']}/models", timeout=10).status_code == 200  # listening already
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=15)
    assert rest == ""  # nothing more on stdout: the one document


def test_serve_max_upload_limits_what_a_client_may_send(tmp_path: Path) -> None:
    from tests.e2e.conftest import start_server, stop_server

    server = start_server(tmp_path / "data", args=("--max-upload", "1K"))
    try:
        with httpx2.Client(base_url=server.url, timeout=30) as http:
            big = http.post("/files", files={"file": ("b.jsonl", b"x" * 2048)}, data={"purpose": "fine-tune"})
            assert big.status_code == 413
            small = http.post("/files", files={"file": ("s.jsonl", b"x" * 1000)}, data={"purpose": "fine-tune"})
            assert small.status_code == 200
    finally:
        stop_server(server)


@pytest.mark.parametrize("size", ["lots", "0", "12X", ""])
def test_serve_refuses_a_size_it_cant_read(size: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ftcli.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--max-upload", size, "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "is not a size" in result.stderr
