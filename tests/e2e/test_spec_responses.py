"""Every endpoint of `ftcli serve`, called through the official SDK: each call parses into the SDK's own types, and
every response (errors and each streamed chunk included) validates against OpenAI's OpenAPI spec."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import FileDeleted, FileObject, Model, ModelDeleted, Upload
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server
from tests.local.zorbia import QA, SYSTEM
from tests.openai_spec import SPEC, RecordingTransport, violations

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.local,
    pytest.mark.slow,
]


@pytest.fixture(autouse=True)
def spec() -> None:
    if not SPEC.exists():
        pytest.fail(f"{SPEC} is missing: tests need ../shared beside the repository")


@pytest.fixture
def recorded(server: Server) -> Iterator[tuple[openai.OpenAI, RecordingTransport]]:
    transport = RecordingTransport()
    with (
        httpx2.Client(transport=transport, timeout=120) as http,
        make_client(Settings(kind="compatible", base_url=server.url), http_client=http, max_retries=0) as sdk,
    ):
        yield sdk, transport


def _lines(count: int) -> bytes:
    chats = [
        {"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QA[:count]
    ]
    return "".join(json.dumps(chat) + "\n" for chat in chats).encode()


def _until(sdk: openai.OpenAI, job_id: str, wanted: set[str], timeout: float = 300) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in wanted:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} never reached {wanted}")


def test_every_endpoint_answers_as_the_spec_says(recorded: tuple[openai.OpenAI, RecordingTransport]) -> None:
    sdk, transport = recorded
    data = _lines(4)

    # Files
    created = sdk.files.create(file=("zorbia.jsonl", data), purpose="fine-tune")
    assert isinstance(created, FileObject) and created.bytes == len(data) and created.status == "processed"
    assert created.id in [f.id for f in sdk.files.list()]
    assert sdk.files.retrieve(created.id).filename == "zorbia.jsonl"
    assert sdk.files.content(created.id).read() == data
    spare = sdk.files.create(file=("spare.jsonl", data), purpose="fine-tune")
    assert sdk.files.delete(spare.id) == FileDeleted(id=spare.id, object="file", deleted=True)

    # Uploads: parts, complete; and a cancelled one
    upload = sdk.uploads.create(bytes=len(data), filename="parts.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    half = len(data) // 2
    parts = [sdk.uploads.parts.create(upload.id, data=chunk) for chunk in (data[:half], data[half:])]
    done = sdk.uploads.complete(upload.id, part_ids=[p.id for p in parts])
    assert isinstance(done, Upload) and done.status == "completed" and done.file is not None
    assert sdk.files.content(done.file.id).read() == data
    dropped = sdk.uploads.create(bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert sdk.uploads.cancel(dropped.id).status == "cancelled"

    # Jobs: pause, resume and cancel a long one; run a short one to the end
    long_job = sdk.fine_tuning.jobs.create(
        model="ftcli/tiny", training_file=created.id, hyperparameters={"n_epochs": 50, "batch_size": 1}
    )
    _until(sdk, long_job.id, {"running"})
    assert sdk.fine_tuning.jobs.pause(long_job.id).status in ("paused", "running")
    _until(sdk, long_job.id, {"paused"})
    assert sdk.fine_tuning.jobs.resume(long_job.id).status in ("queued", "running")
    assert sdk.fine_tuning.jobs.cancel(long_job.id).status in ("cancelled", "running", "queued")
    assert _until(sdk, long_job.id, {"cancelled"}).finished_at is not None

    job = sdk.fine_tuning.jobs.create(
        model="ftcli/tiny",
        training_file=done.file.id,
        validation_file=created.id,
        suffix="spec",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 2}}},
    )
    final = _until(sdk, job.id, {"succeeded", "failed"})
    assert isinstance(final, FineTuningJob) and final.status == "succeeded", final.error
    assert job.id in [j.id for j in sdk.fine_tuning.jobs.list(limit=5)]
    events = list(sdk.fine_tuning.jobs.list_events(job.id, limit=100))
    assert all(isinstance(e, FineTuningJobEvent) for e in events)
    assert any(e.type == "metrics" and "valid_loss" in (e.data or {}) for e in events)  # type: ignore[operator]
    checkpoints = list(sdk.fine_tuning.jobs.checkpoints.list(job.id))
    assert all(isinstance(c, FineTuningJobCheckpoint) for c in checkpoints) and len(checkpoints) == 2
    assert final.result_files and sdk.files.content(final.result_files[0]).read().startswith(b"step,")

    pairs = "".join(
        json.dumps(
            {
                "input": {"messages": [SYSTEM, {"role": "user", "content": q}]},
                "preferred_output": [{"role": "assistant", "content": a}],
                "non_preferred_output": [{"role": "assistant", "content": "I don't know."}],
            }
        )
        + "\n"
        for q, a in QA[:4]
    )
    preferences = sdk.files.create(file=("pairs.jsonl", pairs.encode()), purpose="fine-tune")
    dpo = sdk.fine_tuning.jobs.create(
        model="ftcli/tiny",
        training_file=preferences.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "beta": 0.2}}},
    )
    dpo_final = _until(sdk, dpo.id, {"succeeded", "failed"})
    assert dpo_final.status == "succeeded", dpo_final.error
    assert dpo_final.method and dpo_final.method.dpo and dpo_final.method.dpo.hyperparameters
    assert dpo_final.method.dpo.hyperparameters.beta == 0.2 and dpo_final.method.dpo.hyperparameters.n_epochs == 1

    # Chat: streamed and not, base and fine-tuned
    model = final.fine_tuned_model or ""
    messages: list[Any] = [SYSTEM, {"role": "user", "content": QA[0][0]}]
    answer = sdk.chat.completions.create(model=model, messages=messages, max_completion_tokens=8)
    assert isinstance(answer, ChatCompletion) and answer.usage and answer.usage.completion_tokens <= 8
    assert answer.choices[0].finish_reason in ("stop", "length")
    stream = sdk.chat.completions.create(
        model="ftcli/tiny", messages=messages, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    # Models
    assert {"ftcli/tiny", model} <= {m.id for m in sdk.models.list()}
    assert isinstance(sdk.models.retrieve(model), Model)
    assert sdk.models.delete(model) == ModelDeleted(id=model, object="model", deleted=True)

    # Errors, in OpenAI's envelope
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve("file-missing")
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.create(model="no-such-model", training_file=created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model=model, messages=messages)  # deleted above
    for wrong in ({"n_epochs": 51}, {"batch_size": 0}, {"learning_rate_multiplier": 0}, {"n_epochs": "many"}):
        with pytest.raises(openai.BadRequestError, match=next(iter(wrong))):
            sdk.fine_tuning.jobs.create(model="ftcli/tiny", training_file=created.id, hyperparameters=wrong)  # type: ignore[arg-type]

    problems = [problem for exchange in transport.exchanges for problem in violations(exchange)]
    assert not problems, "\n".join(problems)
    seen = {(e.method, e.status) for e in transport.exchanges}
    assert {("GET", 200), ("POST", 200), ("DELETE", 200), ("GET", 404), ("POST", 400)} <= seen
    assert len(transport.exchanges) > 30
