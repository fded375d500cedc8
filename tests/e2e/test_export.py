"""Leaving a backend, end to end on `ftcli serve`: export a finished job, resume and repair the export, record golden
answers, re-train from the export, and compare the new model with the old one's answers. The local trainer is
deterministic with a seed, so the re-trained model gives the old model's answers exactly."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from openai.types.fine_tuning import FineTuningJob

from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.client import make_client
from ftcli.service.errors import FtcliError
from ftcli.service.job_export import export_jobs
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server, cli_json
from tests.local.zorbia import QA, chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def test_export_golden_retrain_and_compare(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "zorbia.jsonl"
    data.write_text(chat_jsonl(QA))
    train = ["train", "--model", "ftcli/tiny", "--epochs", "3", "--batch-size", "2", "--seed", "11", "--yes", "--wait"]
    old = cli_json(server, tmp_path, *train, "--file", str(data), "--suffix", "old")
    assert isinstance(old, dict) and old["status"] == "succeeded"  # --wait --json: the finished job

    # Export: every artifact, with sizes and sha256 in the manifest
    out = tmp_path / "export"
    first = cli_json(server, tmp_path, "export", "--out", str(out), "--job", old["id"])
    assert first == {"folder": str(out), "jobs": 1, "fetched": 5, "verified": 0}
    folder = out / old["id"]
    assert json.loads((folder / "job.json").read_text())["fine_tuned_model"] == old["fine_tuned_model"]
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert events[0]["message"].startswith("Created fine-tuning job") and any(e["type"] == "metrics" for e in events)
    assert [c["step_number"] for c in json.loads((folder / "checkpoints.json").read_text())] == [15, 10, 5]
    (copy,) = (folder / "files").iterdir()
    assert copy.name == f"{old['training_file']}-zorbia.jsonl" and copy.read_bytes() == data.read_bytes()
    (results,) = (folder / "results").iterdir()
    assert results.read_text().startswith("step,train_loss")
    manifest = json.loads((out / "manifest.json").read_text())
    artifacts = manifest["jobs"][old["id"]]["artifacts"]
    assert len(artifacts) == 5 and manifest["backend"]["base_url"] == server.url
    assert artifacts[f"{old['id']}/files/{copy.name}"]["bytes"] == data.stat().st_size

    # Rerun: data and result files are verified, not fetched; a damaged copy is fetched again
    assert cli_json(server, tmp_path, "export", "--out", str(out), "--job", old["id"])["verified"] == 2
    copy.write_bytes(b"damaged")
    again = cli_json(server, tmp_path, "export", "--out", str(out), "--job", old["id"])
    assert again == {"folder": str(out), "jobs": 1, "fetched": 4, "verified": 1}
    assert copy.read_bytes() == data.read_bytes()

    # Golden answers while the old model exists
    golden = tmp_path / "golden.jsonl"
    model = old["fine_tuned_model"]
    golden_args = ["--golden", str(data), "--model", model, "--out", str(golden), "--max-tokens", "24"]
    cli_json(server, tmp_path, "export", *golden_args)
    recorded = [json.loads(line) for line in golden.read_text().splitlines()]
    assert len(recorded) == len(QA) and all(r["messages"][-1]["role"] == "assistant" for r in recorded)
    meta = json.loads((tmp_path / "golden.jsonl.meta.json").read_text())
    assert meta["model"] == old["fine_tuned_model"] and meta["temperature"] == 0.0 and meta["max_tokens"] == 24

    # Re-train from the export: same data, method and hyperparameters, linked to the old job
    new = cli_json(server, tmp_path, "train", "--from-export", str(folder), "--model", "ftcli/tiny", "--yes", "--wait")
    new = cli_json(server, tmp_path, "status", new["id"])
    assert isinstance(new, dict) and new["status"] == "succeeded" and new["id"] != old["id"]
    assert new["method"]["supervised"]["hyperparameters"]["n_epochs"] == 3 and new["seed"] == 11
    assert new["user_provided_suffix"] == "old" and new["metadata"]["ftcli_retrain_of"] == old["id"]
    run = json.loads((tmp_path / ".ftcli" / "runs" / f"{new['id']}.json").read_text())
    assert run["retrain_of"]["job_id"] == old["id"] and run["retrain_of"]["backend"]["base_url"] == server.url

    # Compare: the re-trained model reproduces the old model's recorded answers
    new_model = new["fine_tuned_model"]
    score = cli_json(server, tmp_path, "chat", "--eval", str(golden), "--model", new_model, "--max-tokens", "24")
    assert score["examples"] == len(QA) and score["exact_matches"] == len(QA), score
    listed = cli_json(server, tmp_path, "models", "--fine-tuned")
    assert {old["fine_tuned_model"], new["fine_tuned_model"]} <= {m["id"] for m in listed}
    assert all(m["base_model"] == "ftcli/tiny" for m in listed if m["id"] == new["fine_tuned_model"])


class _FailingContent(httpx2.BaseTransport):
    """Counts file downloads and drops the connection on the result file's, once: an export cut off mid-way."""

    def __init__(self, fail_on: str | None) -> None:
        self.inner = httpx2.HTTPTransport()
        self.fail_on = fail_on
        self.downloads: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/content"):
            file_id = request.url.path.split("/")[-2]
            if file_id == self.fail_on:
                self.fail_on = None
                raise httpx2.ConnectError("connection reset", request=request)
            self.downloads.append(file_id)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_an_interrupted_export_resumes_without_fetching_completed_files(
    server: Server, finished_job: FineTuningJob, tmp_path: Path
) -> None:
    job = finished_job
    out = tmp_path / "export"

    def run(fail_on: str | None) -> list[str]:
        transport = _FailingContent(fail_on)
        with (
            httpx2.Client(transport=transport) as http,
            make_client(Settings(kind="compatible", base_url=server.url), http_client=http, max_retries=0) as sdk,
        ):
            list(export_jobs(OpenAIBackend(sdk), out, described={"base_url": server.url}, job_ids=[job.id]))
        return transport.downloads

    with pytest.raises(FtcliError):
        run(fail_on=job.result_files[0])
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(k.startswith(f"{job.id}/files/") for k in manifest["jobs"][job.id]["artifacts"])  # kept before the cut
    assert not list(out.rglob(".*.tmp"))  # nothing half-written
    assert run(fail_on=None) == [job.result_files[0]]  # only what was missing; the training file is not fetched again
