"""`ftcli serve` on 127.0.0.1 in a subprocess with its own data directory, stopped after the tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai.types.fine_tuning import FineTuningJob
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.data.local_server import announcement

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    key: str  # made at start; ftcli's commands find it in the runtime file, other clients must send it

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


def cli_json(server: Server, tmp_path: Path, *args: str) -> Any:
    """`ftcli --base-url SERVER --json ARGS` in-process, with its own config and data folders: its one JSON document."""
    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["--base-url", server.url, "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data_dir: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}.log"
    with log_path.open("ab") as log:  # a file, not a pipe: a chatty server can never block on it
        process = subprocess.Popen(
            [sys.executable, "-m", "ftcli", "serve", "--port", str(port), "--data-dir", str(data_dir), *args],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=log,
        )
    given_key = (env or {}).get("FTCLI_SERVER_API_KEY")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ftcli serve exited: {log_path.read_text()}")
        url = f"http://127.0.0.1:{port}/v1"
        if given_key:  # a key of the test's own: no runtime file is written
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return Server(url, data_dir, process, given_key)
        written = announcement(url)  # once the server listens (a file of an earlier server on the port: not yet)
        if written is not None and written["pid"] == process.pid:
            return Server(url, data_dir, process, str(written["api_key"]))
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("ftcli serve did not start within 60 s")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("serve"))
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def finished_job(server: Server) -> FineTuningJob:
    """A short job that succeeded on the session's server (two epochs on four examples), for tests that need one."""
    from ftcli.service import jobs
    from ftcli.service.backends.openai_protocol import OpenAIBackend
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings
    from tests.local.zorbia import QA, chat_jsonl

    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        uploaded = sdk.files.create(file=("four.jsonl", chat_jsonl(QA[:4]).encode()), purpose="fine-tune")
        created = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny",
            training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 2}}},
        )
        final = None
        for progress in jobs.wait_for_job(OpenAIBackend(sdk), created.id, interval=0.2):
            final = progress
        assert final is not None and final.status == "succeeded", final
        return final.job


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("FTCLI_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page of headless Chromium (Debian's, driven by Playwright), in a fresh profile."""
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (scripts/test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1200, "height": 900})  # a fresh, empty profile
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        yield page
        context.close()
        browser.close()
