"""Steady (npm @stdy/cli), a mock server that rejects with 400 any request that doesn't match OpenAI's own OpenAPI
spec, started on 127.0.0.1 for the contract tests. Installed into .cache/steady on first use (CI does the same on
a fresh machine); the tests skip with a reason only where npm is missing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SHARED

STEADY_VERSION = "0.22.1"
STEADY_DIR = REPO / ".cache" / "steady"
STEADY_BIN = STEADY_DIR / "node_modules" / ".bin" / "steady"
SPEC = SHARED / "openai-spec" / "openapi.transformed.yml"
TOGETHER_SPEC = SHARED / "together-spec" / "openapi.yaml"


def _install() -> Path:
    if STEADY_BIN.exists():
        return STEADY_BIN
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the Steady contract tests need Node.js and npm")
    STEADY_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(STEADY_DIR),
            "--no-audit",
            "--no-fund",
            "--silent",
            f"@stdy/cli@{STEADY_VERSION}",
        ],
        check=True,
        timeout=300,
    )
    return STEADY_BIN


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _steady(spec: Path) -> Iterator[str]:
    """Steady serving `spec` on a free port of 127.0.0.1, for as long as the context lasts."""
    if not spec.exists():
        pytest.fail(f"{spec} is missing: contract tests need ../shared")
    binary = _install()
    port = _free_port()
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "-p", str(port), "--log-level", "summary", str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"Steady exited with {process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("Steady did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def steady_url() -> Iterator[str]:
    """Steady serving OpenAI's spec."""
    with _steady(SPEC) as url:
        yield url


@pytest.fixture(scope="session")
def together_url() -> Iterator[str]:
    """Steady serving Together's spec (its routes at the root, as under https://api.together.xyz/v1)."""
    with _steady(TOGETHER_SPEC) as url:
        yield url


class Exchanges(list[tuple[str, str, str]]):
    """(method, spec path Steady matched, "true"/"false" validity) for every response."""

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self]

    def assert_all_valid(self) -> None:
        assert self, "no request reached Steady"
        invalid = [entry for entry in self if entry[2] != "true"]
        assert not invalid, f"requests that don't match the provider's spec: {invalid}"


@pytest.fixture
def exchanges() -> Exchanges:
    return Exchanges()


def recording(exchanges: Exchanges) -> Any:
    """An HTTP client that notes, for every response, what Steady matched and whether the request was valid."""
    import httpx2

    def record(response: httpx2.Response) -> None:
        exchanges.append(
            (
                response.request.method,
                response.headers.get("x-steady-matched-path", "?"),
                response.headers.get("x-steady-request-valid", "?"),
            )
        )

    return httpx2.Client(event_hooks={"response": [record]})


@pytest.fixture
def client(steady_url: str, exchanges: Exchanges):  # type: ignore[no-untyped-def]
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    http = recording(exchanges)
    yield make_client(
        Settings(kind="compatible", base_url=steady_url, api_key="sk-test-contract"), max_retries=0, http_client=http
    )
    http.close()
    exchanges.assert_all_valid()
