"""`train --model ft:…` / `--from-checkpoint` as each backend takes them (Backend.start_from), before anything is
uploaded: OpenAI's protocol sends the model or checkpoint name as the job's model (ftcli serve the same); Together
sends the job's base as the model and the name as `from_checkpoint`; unknown names and a checkpoint of another
base than `--model` are refused naming them."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.errors import UsageError
from ftcli.service.jobs import JobRequest, create_job
from tests.faults.test_together_faults import FakeTogether

BASE = "meta-llama/Llama-3.1-8B"  # the base the fake Together trains
MADE = "user/Llama-3.1-8B-legal-abc123"  # a model one of its jobs made


def _together_with_a_job() -> tuple[FakeTogether, list[dict[str, Any]]]:
    fake = FakeTogether()
    fake.jobs["ft-7"] = {"id": "ft-7", "status": "completed", "model": BASE, "model_output_name": MADE,
                         "training_file": "file-0", "created_at": "2026-12-01T10:00:00Z"}  # fmt: skip
    sent: list[dict[str, Any]] = []
    handle = fake.handle

    def noting(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/fine-tunes"):
            sent.append(json.loads(request.content))
        return handle(request)

    fake.handle = noting  # type: ignore[method-assign]
    return fake, sent


def test_together_trains_a_model_its_job_made_from_that_job_and_checkpoint() -> None:
    fake, sent = _together_with_a_job()
    backend = fake.backend()
    started = backend.start_from(JobRequest(model=MADE, training_file="file-1"))
    assert started.model == BASE and started.from_checkpoint == MADE
    backend.create_job(started)
    assert sent[-1]["model"] == BASE and sent[-1]["from_checkpoint"] == MADE


@pytest.mark.parametrize("checkpoint", ["ft-7", "ft-7:30", MADE, f"{MADE}:30"])
def test_together_fills_in_a_checkpoints_base(checkpoint: str) -> None:
    fake, sent = _together_with_a_job()
    backend = fake.backend()
    started = backend.start_from(JobRequest(model="", training_file="file-1", from_checkpoint=checkpoint))
    assert started.model == BASE and started.from_checkpoint == checkpoint
    backend.create_job(started)
    assert sent[-1]["from_checkpoint"] == checkpoint
    created = next(job for job in fake.jobs.values() if job["id"] != "ft-7")
    assert created["model"] == BASE


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (JobRequest(model="user/nobody-made-this", training_file="f"), "Together does not fine-tune user/nobody"),
        (JobRequest(model="", training_file="f", from_checkpoint="ft-404"), "Together has no job ft-404"),
        (JobRequest(model="", training_file="f", from_checkpoint="user/other:3"), "no job of this Together account"),
        (JobRequest(model="Qwen/Qwen3-8B", training_file="f", from_checkpoint="ft-7"), "is of meta-llama/Llama-3.1"),
    ],
    ids=["unknown-model", "unknown-job", "unknown-output", "another-base"],
)
def test_together_refuses_what_it_cant_continue_before_anything_is_sent(request_: JobRequest, says: str) -> None:
    fake, sent = _together_with_a_job()
    fake.faults.append(lambda request: httpx2.Response(404, json={"message": "no"}) if "ft-404" in str(request.url)
                       else None)  # fmt: skip
    with pytest.raises(UsageError, match=says):
        fake.backend().start_from(request_)
    assert sent == [] and not any(method == "POST" for method, _ in fake.requests)


def test_a_together_job_says_what_it_continues() -> None:
    from ftcli.service.backends.together_wire import job_object

    job = job_object({"id": "ft-8", "status": "running", "model": BASE, "from_checkpoint": "ft-7:30"})
    assert getattr(job, "parent", None) == {"job_id": "ft-7", "model": None, "checkpoint": "ft-7:30", "base": BASE}
    assert "parent" not in job_object({"id": "ft-9", "status": "running", "model": BASE}).model_dump()


def test_openais_protocol_sends_the_checkpoint_as_the_model() -> None:
    backend = OpenAIBackend(None, kind="openai")  # type: ignore[arg-type]  # nothing is sent
    checkpoint = "ft:gpt-4o-mini-2024-07-18:org:legal:AbC123:ckpt-step-40"
    for model in ("", "gpt-4o-mini-2024-07-18", "ft:gpt-4o-mini-2024-07-18:org:legal:AbC123"):
        started = backend.start_from(JobRequest(model=model, training_file="f", from_checkpoint=checkpoint))
        assert started.model == checkpoint and started.from_checkpoint is None
    plain = JobRequest(model="ft:gpt-4o-mini-2024-07-18:org:legal:AbC123", training_file="f")
    assert backend.start_from(plain) is plain  # a fine-tuned model as the base: passed through as it is
    assert plain.create_params("t")["model"] == plain.model
    with pytest.raises(UsageError, match="is of gpt-4o-mini-2024-07-18, not of gpt-4.1-mini"):
        backend.start_from(JobRequest(model="gpt-4.1-mini-2025-04-14", training_file="f", from_checkpoint=checkpoint))
    with pytest.raises(UsageError, match="names a checkpoint by its model"):
        backend.start_from(JobRequest(model="", training_file="f", from_checkpoint="ftckpt-abc"))
    with pytest.raises(UsageError, match="no from_checkpoint"):  # never dropped on the way: it would train the base
        create_job(None, JobRequest(model="m", training_file="f", from_checkpoint=checkpoint))  # type: ignore[arg-type]
