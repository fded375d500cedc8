"""One `ftcli serve` on loopback under load, bounded in count and time: 50 concurrent chat streams and 20 concurrent
uploads. Every request succeeds (the server documents no 429 of its own), every upload keeps its bytes, and
afterwards the server holds no more file handles than before and its memory is back near where it started."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]
STREAMS, UPLOADS = 50, 20


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
def test_50_streams_and_20_uploads_at_once(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    pid = server.process.pid
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0, timeout=300) as sdk:

            def stream(index: int) -> str:
                chunks = sdk.chat.completions.create(
                    model="ftcli/tiny",
                    messages=[{"role": "user", "content": f"Question {index}?"}],
                    max_tokens=12,
                    stream=True,
                )
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

            def upload(index: int) -> tuple[str, str]:
                data = (f'{{"messages": [{{"role": "user", "content": "{index}"}}]}}\n' * 20_000).encode()
                created = sdk.files.create(file=(f"u{index}.jsonl", data), purpose="fine-tune")
                return hashlib.sha256(sdk.files.content(created.id).read()).hexdigest(), hashlib.sha256(
                    data
                ).hexdigest()

            stream(0)  # warm-up: the model is loaded once, then kept; a first burst fills the connection pool
            with ThreadPoolExecutor(max_workers=8) as pool:
                warm = list(pool.map(upload, range(-8, 0)))
            assert all(got == sent for got, sent in warm)
            time.sleep(0.5)
            fds_before, rss_before = _fds(pid), _rss_mb(pid)

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=STREAMS + UPLOADS) as pool:
                streams = [pool.submit(stream, i) for i in range(STREAMS)]
                uploads = [pool.submit(upload, i) for i in range(UPLOADS)]
                answers = [f.result(timeout=300) for f in streams]
                digests = [f.result(timeout=300) for f in uploads]
            elapsed = time.monotonic() - started

            assert len(answers) == STREAMS and all(isinstance(a, str) for a in answers)
            assert all(got == sent for got, sent in digests), "an upload lost or changed bytes"
            assert len({f.id for f in sdk.files.list()}) == UPLOADS + 8
            assert elapsed < 300

        deadline = time.monotonic() + 10
        while _fds(pid) > fds_before and time.monotonic() < deadline:  # keep-alive sockets close on their own
            time.sleep(0.2)
        assert _fds(pid) <= fds_before, "the server kept file handles open"
        assert _rss_mb(pid) < rss_before + 64, (rss_before, _rss_mb(pid))
    finally:
        stop_server(server)
