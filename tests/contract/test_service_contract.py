"""Every request the service layer sends must match OpenAI's spec (Steady answers 400 otherwise, which the
service turns into an FtcliError and fails the test). Responses are random valid data: assert types, not values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob

from ftcli.service import chat, files, jobs
from ftcli.service.errors import FtcliError
from ftcli.service.jobs import JobRequest
from ftcli.service.ledger import Ledger

pytestmark = pytest.mark.contract


@pytest.fixture
def training_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
        for i in range(12)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_single_upload(client, training_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sent: list[int] = []
    result = files.upload_file(
        client,
        training_file,
        ledger=Ledger(tmp_path / "ledger.json"),
        wait=False,
        multipart=False,
        on_progress=sent.append,
    )
    assert isinstance(result.file, FileObject) and not result.multipart
    assert sum(sent) >= training_file.stat().st_size


def test_multipart_upload(client, exchanges, training_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(tmp_path / "ledger.json")
    try:
        files.upload_file(client, training_file, ledger=ledger, wait=False, multipart=True, part_size=256, parallel=2)
    except FtcliError as exc:  # Steady's random Upload may carry no file; the requests are what is tested here
        assert "completed without a file" in exc.message
    parts = -(-training_file.stat().st_size // 256)
    assert exchanges.paths() == (
        ["POST /uploads"] + ["POST /uploads/{upload_id}/parts"] * parts + ["POST /uploads/{upload_id}/complete"]
    )


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_create_job_with_every_option(client, exchanges, method: str) -> None:  # type: ignore[no-untyped-def]
    request = JobRequest(
        model="gpt-4o-mini-2024-07-18",
        training_file="file-abc",
        validation_file="file-def",
        method=method,
        n_epochs=3,
        batch_size=4,
        learning_rate_multiplier=0.5,
        beta=0.1 if method == "dpo" else None,
        suffix="legal",
        seed=42,
        metadata={"team": "law"},
    )
    job = jobs.create_job(client, request)
    assert isinstance(job, FineTuningJob)
    assert exchanges.paths() == ["POST /fine_tuning/jobs"]


def test_job_reads_and_controls(client, exchanges) -> None:  # type: ignore[no-untyped-def]
    assert all(isinstance(job, FineTuningJob) for job in jobs.list_jobs(client, limit=3))
    assert isinstance(jobs.get_job(client, "ftjob-abc"), FineTuningJob)
    assert isinstance(jobs.list_events(client, "ftjob-abc"), list)
    assert isinstance(jobs.list_checkpoints(client, "ftjob-abc"), list)
    for action in (jobs.cancel_job, jobs.pause_job, jobs.resume_job):
        assert isinstance(action(client, "ftjob-abc"), FineTuningJob)
    jobs.find_by_tag(client, "0123abcd")  # the metadata filter used to avoid duplicate jobs
    assert exchanges.paths() == [
        "GET /fine_tuning/jobs",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/pause",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/resume",
        "GET /fine_tuning/jobs",
    ]


def test_chat_completion(client) -> None:  # type: ignore[no-untyped-def]
    params = chat.ChatParams(model="ft:gpt-4o-mini-2024-07-18:org:legal:abc", temperature=0.2, max_tokens=50)
    answer = chat.complete(client, params, [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}])
    assert isinstance(answer, str)


def test_models_list(client) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(list(client.models.list()), list)


def test_models_with_shutdown_dates(client, exchanges) -> None:  # type: ignore[no-untyped-def]
    from ftcli.service.models import list_models, shutdown_of

    assert all(view.id for view in list_models(client))
    assert exchanges.paths() == ["GET /models"]
    date, source = shutdown_of("ft:gpt-4o-mini-2024-07-18:acme:legal:abc")
    assert (str(date), source) == ("2027-01-14", "catalog")
    assert shutdown_of("ft:gpt-4o-mini-2024-07-18:acme::x", "2026-12-01")[1] == "api"


def test_export_and_golden_requests(client, exchanges, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ftcli.service.backends.openai_protocol import OpenAIBackend
    from ftcli.service.golden import GoldenSettings, record_golden
    from ftcli.service.job_export import export_jobs

    steps = list(
        export_jobs(OpenAIBackend(client), tmp_path / "out", described={"kind": "openai"}, job_ids=["ftjob-abc123"])
    )
    assert steps and (tmp_path / "out" / "manifest.json").exists()
    seen = set(exchanges.paths())
    assert {
        "GET /fine_tuning/jobs/{fine_tuning_job_id}",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    } <= seen
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    settings = GoldenSettings("ft:gpt-4o-mini-2024-07-18:acme::abc", temperature=0.0, max_tokens=16, seed=7)
    assert list(record_golden(client, prompts, tmp_path / "golden.jsonl", settings)) == [(1, 1)]
    assert exchanges.paths()[-1] == "POST /chat/completions"
    exchanges.assert_all_valid()
