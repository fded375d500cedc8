"""Faults injected by a proxy on 127.0.0.1 between ftcli and a real `ftcli serve`: 429 with Retry-After,
500/502/503, connections reset mid-body or right after the backend did the work, slow answers, dropped SSE
streams. Uploads resume with the right bytes, `status --wait` rides through to the job's final state, `train` never
creates a second job, and `chat` reports a dropped stream and keeps what arrived."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service import files
from ftcli.service.client import make_client
from ftcli.service.errors import FtcliError
from ftcli.service.ledger import Ledger
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server
from tests.faults.proxy import FaultProxy, Rule
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    running = FaultProxy(server.url.removesuffix("/v1"), key=server.key).start()
    yield running
    running.stop()


def _cli(proxy: FaultProxy, tmp_path: Path, *args: str) -> object:
    # The proxy listens on a port of its own, so the server's runtime file can't name its key: given outright, and
    # named for the proxy's URL (a loopback URL gets an environment key only when OPENAI_BASE_URL names it)
    env = {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_API_KEY": proxy.key,
        "OPENAI_BASE_URL": f"{proxy.url}/v1",
    }
    return CliRunner().invoke(app, ["--base-url", f"{proxy.url}/v1", *args], env=env)


def _data(tmp_path: Path, count: int = 4) -> Path:
    path = tmp_path / "zorbia.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]})
            + "\n"
            for q, a in QA[:count]
        )
    )
    return path


def test_status_wait_rides_through_faults_to_the_final_state(server: Server, proxy: FaultProxy, tmp_path: Path) -> None:
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        uploaded = sdk.files.create(file=("z.jsonl", _data(tmp_path).read_bytes()), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny", training_file=uploaded.id, hyperparameters={"n_epochs": 2}
        )
    one_job = rf"/v1/fine_tuning/jobs/{job.id}"
    proxy.add(
        Rule("GET", one_job, "status", times=2, status=429, retry_after="1"),
        Rule("GET", one_job, "status", status=502),
        Rule("GET", one_job, "status", status=503),
        Rule("GET", one_job, "cut_body", keep=20),
        Rule("GET", one_job, "delay", seconds=2),
        Rule("GET", one_job + "/events", "status", times=2, status=500),
    )
    result = _cli(proxy, tmp_path, "status", job.id, "--wait")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "succeeded" in result.output  # type: ignore[attr-defined]
    assert all(rule.hits == rule.times for rule in proxy.rules), [(r.action, r.hits) for r in proxy.rules]


def test_train_never_creates_a_second_job(server: Server, proxy: FaultProxy, tmp_path: Path) -> None:
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        uploaded = sdk.files.create(file=("z.jsonl", _data(tmp_path).read_bytes()), purpose="fine-tune")
        before = {j.id for j in sdk.fine_tuning.jobs.list(limit=100)}
    # The backend creates the job, but the answer never arrives; then a 503 on the retry's lookup.
    proxy.add(
        Rule("POST", r"/v1/fine_tuning/jobs", "reset_after_forward"),
        Rule("GET", r"/v1/fine_tuning/jobs", "status", status=503),
    )
    result = _cli(
        proxy, tmp_path, "--json", "train", "--file", uploaded.id, "--model", "ftcli/tiny", "--epochs", "1", "--yes"
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        created = {j.id for j in sdk.fine_tuning.jobs.list(limit=100)} - before
    assert len(created) == 1, created
    assert json.loads(result.stdout)["id"] in created  # type: ignore[attr-defined]
    assert [s[2] for s in proxy.seen if s[:2] == ("POST", "/v1/fine_tuning/jobs")] == ["reset_after_forward"]


def test_chat_reports_a_dropped_stream_and_keeps_what_arrived(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add(Rule("POST", r"/v1/chat/completions", "cut_body", keep=900))
    result = _cli(proxy, tmp_path, "chat", "--model", "ftcli/tiny", "--max-tokens", "64", "Tell me about Zorbia.")
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert result.stdout.strip(), "the text that arrived before the drop is kept"  # type: ignore[attr-defined]
    assert "stream" in result.stderr.lower()  # type: ignore[attr-defined]


def test_an_interrupted_multipart_upload_resumes_with_the_right_bytes(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    data = _data(tmp_path, count=10)
    data.write_bytes(data.read_bytes() * 200)  # ~190 KB: 8 parts of 24 KB
    ledger = Ledger(tmp_path / "ledger.json")
    parts = r"/v1/uploads/[^/]+/parts"
    proxy.add(Rule("POST", parts, "status", times=3, status=503))  # one part fails through the SDK's 2 retries
    settings = Settings(kind="compatible", base_url=f"{proxy.url}/v1", api_key=proxy.key)
    with make_client(settings) as sdk, pytest.raises(FtcliError):
        files.upload_file(sdk, data, ledger=ledger, multipart=True, part_size=24_000, parallel=1)
    sent_first = sum(1 for s in proxy.seen if s[0] == "POST" and s[1].endswith("/parts") and s[2] == "pass")
    proxy.add(Rule("POST", parts, "cut_body", keep=5))  # and a reset mid-answer on the resumed run
    with make_client(settings) as sdk:
        result = files.upload_file(sdk, data, ledger=ledger, multipart=True, part_size=24_000, parallel=1)
        assert result.resumed_parts == sent_first >= 1
        assert sdk.files.content(result.file.id).read() == data.read_bytes()
