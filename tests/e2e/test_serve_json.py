"""`ftcli serve --json`: one document with the URLs and the data folder, written once the server listens."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from ftcli.data.local_server import runtime_dir
from tests.e2e.conftest import Server, free_port

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
        key_file = runtime_dir() / f"server-{port}.json"
        key = json.loads(key_file.read_text())["api_key"]
        assert started == {
            "base_url": f"http://127.0.0.1:{port}/v1",
            "web": f"http://127.0.0.1:{port}/#token={key}",  # the page takes its key from the fragment
            "data_dir": str(data_dir),
            "key_file": str(key_file),
            "engine": "builtin",  # no CUDA GPU with vLLM here: the built-in engine answers chats
        }
        auth = {"authorization": f"Bearer {key}"}
        assert httpx2.get(f"{started['base_url']}/models", headers=auth, timeout=10).status_code == 200  # listening
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=15)
    assert rest == ""  # nothing more on stdout: the one document
    assert not key_file.exists()  # withdrawn at shutdown


def test_another_user_of_the_machine_gets_nothing_from_a_server_started_without_a_key(
    server: Server, tmp_path: Path
) -> None:
    """The same-machine attack: anyone can reach 127.0.0.1, but a server started without a key makes one per start,
    readable only by its user (0600 in a 0700 folder); ftcli's own commands find it, nobody else has it."""
    for stranger in ({}, {"authorization": "Bearer ftcli-local"}):
        refused = httpx2.get(f"{server.url}/files", headers=stranger, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert httpx2.get(f"{server.url}/files", headers=server.auth, timeout=10).status_code == 200
    key_file = runtime_dir() / f"server-{urlsplit(server.url).port}.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(runtime_dir().stat().st_mode) == 0o700

    from typer.testing import CliRunner

    from ftcli.cli.app import app

    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}
    own = CliRunner().invoke(app, ["--base-url", server.url, "--json", "status"], env=env)
    assert own.exit_code == 0, own.output  # this user's ftcli reads the key from the runtime file
    stranger_env = {**env, "FTCLI_RUNTIME_DIR": str(tmp_path / "another-users-runtime")}
    theirs = CliRunner().invoke(app, ["--base-url", server.url, "--json", "status"], env=stranger_env)
    assert theirs.exit_code != 0 and "api key" in theirs.output.lower()
    status_web = CliRunner().invoke(app, ["--base-url", server.url, "status", "--web"], env=env)
    assert status_web.output.strip().endswith(f"#/jobs&token={server.key}")


def test_serve_max_upload_limits_what_a_client_may_send(tmp_path: Path) -> None:
    from tests.e2e.conftest import start_server, stop_server

    server = start_server(tmp_path / "data", args=("--max-upload", "1K"))
    try:
        with httpx2.Client(base_url=server.url, headers=server.auth, timeout=30) as http:
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
