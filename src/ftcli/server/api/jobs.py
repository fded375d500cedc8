"""Fine-tuning jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ftcli.server import hardware
from ftcli.server.api.bodies import read_request
from ftcli.server.api.errors import ApiError, not_found
from ftcli.server.bases import UnknownBase, require_base
from ftcli.server.protocol.common import CursorPage, Page
from ftcli.server.protocol.jobs import Checkpoint, CreateJob, FineTuningJob, JobEvent
from ftcli.server.runner import JobRunner
from ftcli.server.store import Store, new_id, now

router = APIRouter(prefix="/fine_tuning/jobs")


def _state(request: Request) -> tuple[Store, JobRunner]:
    return request.app.state.store, request.app.state.runner


def _job(store: Store, job_id: str) -> dict[str, Any]:
    job = store.job(job_id)
    if job is None:
        raise not_found("fine-tuning job", job_id)
    return job


@router.post("")
async def create_job(request: Request) -> FineTuningJob:
    body = await read_request(request, CreateJob)
    store, _ = _state(request)
    try:
        model = require_base(body.model)
    except UnknownBase as exc:
        raise ApiError(400, str(exc), param="model", code="model_not_available") from None
    for key, file_id in (("training_file", body.training_file), ("validation_file", body.validation_file)):
        if file_id and store.file(file_id) is None:
            raise ApiError(400, f"{key} {file_id} does not exist", param=key)
    method = body.method or {
        "type": "supervised",
        "supervised": {"hyperparameters": body.hyperparameters or {}},
    }
    if method.get("type") not in ("supervised", "dpo"):
        raise ApiError(400, "the local backend trains supervised (sft) and dpo jobs", param="method.type")
    hyperparameters = method.setdefault(method["type"], {}).setdefault("hyperparameters", {}) or {}
    _check_hyperparameters(hyperparameters)
    for key, value in request.app.state.lora_defaults.items():
        hyperparameters.setdefault(key, value)
    method[method["type"]]["hyperparameters"] = hyperparameters
    job = FineTuningJob(
        id=new_id("ftjob"),
        created_at=now(),
        model=model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        status="validating_files",
        hyperparameters=hyperparameters,
        method=method,
        seed=body.seed or 0,
        metadata=body.metadata,
        user_provided_suffix=body.suffix,
    )
    store.save_job(job.model_dump(mode="json"))
    store.add_event(job.id, f"Created fine-tuning job: {job.id}")
    return job


# OpenAI's bounds (its OpenAPI spec); the local backend keeps them so a job that runs here would run there too.
BOUNDS = {
    "n_epochs": (int, 1, 50),
    "batch_size": (int, 1, 256),
    "learning_rate_multiplier": (float, 0.0, None),
    "beta": (float, 0.0, 2.0),
    # ftcli's own (OpenAI has no such setting): stop once an epoch's mean training loss is at most this
    "stop_at_loss": (float, 0.0, None),
    "max_seq_length": (int, 16, 1 << 20),  # tokens per example; longer ones are truncated (a warning event)
}


def _check_hyperparameters(hyperparameters: dict[str, Any]) -> None:
    for switch in ("packing", "gradient_checkpointing", "fsdp"):
        if hyperparameters.get(switch, "auto") not in ("auto", None, True, False):
            raise ApiError(400, f"{switch} must be 'auto', true or false", param=f"hyperparameters.{switch}")
    if hyperparameters.get("fsdp") is True and hyperparameters.get("quantization") == "4bit":
        raise ApiError(
            400,
            "fsdp and quantization '4bit' can't be combined here: QLoRA fits a base of up to 8B parameters on one "
            "24 GB GPU; FSDP shards a larger base across the GPUs of `ftcli serve --processes N`",
            param="hyperparameters.fsdp",
        )
    if hyperparameters.get("quantization", "none") not in ("none", None, "auto"):
        try:  # 4-bit needs this machine's CUDA GPU and bitsandbytes: refused now, not after the job was queued
            hardware.quantization(hyperparameters["quantization"], hardware.Machine.this_one())
        except hardware.UnsupportedSetting as exc:
            raise ApiError(400, str(exc), param="hyperparameters.quantization") from None
    for key, (kind, low, high) in BOUNDS.items():
        value = hyperparameters.get(key, "auto")
        if value == "auto" or value is None:
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and value != int(value)):
            raise ApiError(400, f"{key} must be 'auto' or a {kind.__name__}", param=f"hyperparameters.{key}")
        if value < low or (kind is float and value <= low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"above {low}"
            raise ApiError(400, f"{key} must be {bounds}, got {value}", param=f"hyperparameters.{key}")


@router.get("")
def list_jobs(request: Request, limit: int = 20, after: str | None = None) -> Page[FineTuningJob]:
    store, _ = _state(request)
    wanted = {k[len("metadata[") : -1]: v for k, v in request.query_params.items() if k.startswith("metadata[")}
    jobs = [j for j in store.jobs() if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
    if after:
        ids = [j["id"] for j in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    return Page(data=[FineTuningJob.model_validate(j) for j in jobs[:limit]], has_more=len(jobs) > limit)


@router.get("/{job_id}")
def retrieve_job(request: Request, job_id: str) -> FineTuningJob:
    return FineTuningJob.model_validate(_job(_state(request)[0], job_id))


@router.post("/{job_id}/cancel")
def cancel_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] in ("succeeded", "failed", "cancelled"):
        raise ApiError(400, f"Job {job_id} has already finished", param="fine_tuning_job_id")
    return FineTuningJob.model_validate(runner.stop_job(job_id, "cancelled"))


@router.post("/{job_id}/pause")
def pause_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] not in ("queued", "running", "validating_files"):
        raise ApiError(400, f"Job {job_id} is not running", param="fine_tuning_job_id")
    return FineTuningJob.model_validate(runner.stop_job(job_id, "paused"))


@router.post("/{job_id}/resume")
def resume_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] != "paused":
        raise ApiError(400, f"Job {job_id} is not paused", param="fine_tuning_job_id")
    return FineTuningJob.model_validate(runner.resume_job(job_id))


@router.get("/{job_id}/events")
def list_events(request: Request, job_id: str, limit: int = 20, after: str | None = None) -> Page[JobEvent]:
    store, _ = _state(request)
    _job(store, job_id)
    events = store.events(job_id)  # newest first, as OpenAI
    if after:
        ids = [e["id"] for e in events]
        events = events[ids.index(after) + 1 :] if after in ids else []
    return Page(data=[JobEvent.model_validate(e) for e in events[:limit]], has_more=len(events) > limit)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(request: Request, job_id: str, limit: int = 10) -> CursorPage[Checkpoint]:
    store, _ = _state(request)
    _job(store, job_id)
    rows = store.checkpoints(job_id)
    data = [Checkpoint.of(row) for row in rows[:limit]]
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return CursorPage(data=data, has_more=len(rows) > limit, first_id=first, last_id=last)
