"""Fine-tuning jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ftcli.server import hardware
from ftcli.server.api import paging
from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.errors import ApiError, not_found
from ftcli.server.bases import UnknownBase, require_base
from ftcli.server.lineage import Start, find_start, has_adapter, lora_settings
from ftcli.server.protocol.common import CursorPage, Page
from ftcli.server.protocol.hyperparameters import AUTO, METHODS, InvalidHyperparameter, TrainingHyperparameters, parse
from ftcli.server.protocol.jobs import Checkpoint, CreateJob, FineTuningJob, JobEvent
from ftcli.server.runner import JobRunner
from ftcli.server.store import Store, new_id, now

router = APIRouter(prefix="/fine_tuning/jobs")
# OpenAI's spec gives these lists no bounds; one page is at least one item and at most what a client can use
Limit = Annotated[int, Query(ge=1, le=10_000)]


def _state(request: Request) -> tuple[Store, JobRunner]:
    return request.app.state.store, request.app.state.runner


def _job(store: Store, job_id: str) -> dict[str, Any]:
    job = store.job(job_id)
    if job is None:
        raise not_found("fine-tuning job", job_id)
    return job


@router.post("", openapi_extra=documented_body(CreateJob))
async def create_job(request: Request) -> FineTuningJob:
    body = await read_request(request, CreateJob)
    store, _ = _state(request)
    start = _start(store, body.model)  # a fine-tuned model or checkpoint of this server: the job continues it
    try:
        base = require_base(start.parent.base if start else body.model)
    except UnknownBase as exc:
        raise ApiError(400, str(exc), param="model", code="model_not_available") from None
    model = body.model if start else base  # a continued job's is the model it continues, as OpenAI reports it
    for key, file_id in (("training_file", body.training_file), ("validation_file", body.validation_file)):
        if file_id and store.file(file_id) is None:
            raise ApiError(400, f"{key} {file_id} does not exist", param=key)
    method, requested = _method(body, request.app.state.lora_defaults, continued=start)
    if requested.method == "reinforcement":
        # off the event loop: a grader's templates and formula are checked in time proportional to their size
        method["reinforcement"]["grader"] = await run_in_threadpool(_grader, store, body)
    job = FineTuningJob(
        id=new_id("ftjob"),
        created_at=now(),
        model=model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        status="validating_files",
        hyperparameters=requested.given(),
        method=method,
        seed=body.seed or 0,
        metadata=body.metadata,
        user_provided_suffix=body.suffix,
        parent=start.parent if start else None,
    )
    store.save_job(job.model_dump(mode="json"))
    store.add_event(job.id, f"Created fine-tuning job: {job.id}")
    if start is not None:
        of = f"checkpoint {start.parent.checkpoint}" if start.parent.checkpoint else "the fine-tuned model"
        store.add_event(job.id, f"Continues {start.parent.model} ({of} of {start.parent.job_id})")
    return job


def _start(store: Store, model: str) -> Start | None:
    """What a job naming `model` continues: a fine-tuned model or a checkpoint of this server (with its adapter
    still there); None for a base. Any other `ft:` name is refused naming it."""
    start = find_start(store, model)
    if start is None:
        if model.startswith("ft:"):
            raise ApiError(
                400,
                f"{model!r} is not a fine-tuned model or checkpoint of this server: GET /v1/models lists its models, "
                "GET /v1/fine_tuning/jobs/{job_id}/checkpoints a job's checkpoints",
                param="model",
                code="model_not_available",
            )
        return None
    if not has_adapter(start.adapter):
        kept = "its job keeps only its last checkpoints" if start.parent.checkpoint else "its files are gone"
        raise ApiError(400, f"{model!r} can't be continued: {kept}", param="model", code="model_not_available")
    return start


def _parent_lora(start: Start, given: dict[str, Any], where: str) -> dict[str, Any]:
    """The LoRA settings of the adapter a continued job trains further. They are the parent's, not the job's to
    choose: one the request sets to another value is refused, naming it, rather than silently replaced."""
    try:
        parent = lora_settings(start.adapter)
    except (OSError, ValueError):  # deleted or damaged since it was found
        raise ApiError(
            400, f"{start.parent.model!r} can't be continued: its adapter can't be read", param="model",
            code="model_not_available",
        ) from None  # fmt: skip
    for key, value in parent.items():
        asked = given.get(key, AUTO)
        if asked != AUTO and asked != value:
            raise ApiError(
                400,
                f"{where}.{key}: {start.parent.model} was trained with {key}={value}, and a job that continues it "
                f"trains that same adapter further: leave {key} unset (or {value})",
                param=f"{where}.{key}",
            )
    return parent


def _method(
    body: CreateJob, server_defaults: dict[str, Any], *, continued: Start | None = None
) -> tuple[dict[str, Any], TrainingHyperparameters]:
    """The job's `method` (from the deprecated top-level `hyperparameters` when it names none), its hyperparameters
    checked against the method's schema with the server's LoRA defaults filling what the request leaves unset (for a
    job that `continued` a fine-tuned model: that model's LoRA settings); and the typed hyperparameters. A refusal is
    a 400 naming the field where the request put it."""
    if body.method is None:
        kind: Any = "supervised"
        section: Any = {"hyperparameters": body.hyperparameters}
        where = "hyperparameters"
    else:
        kind = body.method.get("type")
        section = body.method.get(kind) if isinstance(kind, str) else None
        where = f"method.{kind}.hyperparameters"
    if not isinstance(kind, str) or kind not in METHODS:
        raise ApiError(
            400, "the local backend trains supervised (sft), dpo and reinforcement jobs", param="method.type"
        )
    if not isinstance(section, dict | None):
        raise ApiError(400, f"method.{kind} must be an object", param=f"method.{kind}")
    given = (section or {}).get("hyperparameters")
    if not isinstance(given, dict | None):
        raise ApiError(400, f"{where} must be an object", param=where)
    lora = _parent_lora(continued, given or {}, where) if continued is not None else {}
    try:
        requested = parse(kind, {**server_defaults, **(given or {}), **lora})
    except InvalidHyperparameter as exc:
        raise ApiError(400, exc.message, param=f"{where}.{exc.key}" if exc.key else where) from None
    if requested.quantization == "4bit" or requested.precision in ("bf16", "fp16"):
        machine = hardware.Machine.this_one()  # (imports torch: only for a setting that depends on the machine)
        for key, honour in (("quantization", hardware.quantization), ("precision", hardware.precision)):
            try:  # refused now, not after the job was queued
                honour(getattr(requested, key), machine)
            except hardware.UnsupportedSetting as exc:
                raise ApiError(400, str(exc), param=f"{where}.{key}") from None
    return {"type": kind, kind: {"hyperparameters": requested.given()}}, requested


def _grader(store: Store, body: CreateJob) -> dict[str, Any]:
    """A reinforcement job's grader, checked as OpenAI's validate endpoint checks it (data/graders/spec.py) and its
    judge models served here: a 400 names the field. The job keeps it as the request wrote it."""
    from ftcli.data.graders.python_sandbox import python_grader_paths, sandbox_problem
    from ftcli.data.graders.spec import GraderError, parse_grader
    from ftcli.server.judge import unreachable_judge

    where = "method.reinforcement.grader"
    given = ((body.method or {}).get("reinforcement") or {}).get("grader")
    if given is None:
        raise ApiError(400, f"{where} is required: the grader that scores each sampled answer", param=where)
    try:
        grader = parse_grader(given, where=where)
    except GraderError as exc:
        message = str(exc)
        path = message.split(":", 1)[0]
        raise ApiError(400, message, param=path if path.startswith(where) else where) from None
    python = python_grader_paths(grader, where)
    problem = sandbox_problem() if python else None
    if problem is not None:  # it would only ever score 0: refused now rather than train on nothing
        raise ApiError(400, f"{python[0]}: python graders can't run on this server: {problem}", param=python[0])
    unserved = unreachable_judge(store, grader, where)
    if unserved is not None:
        raise ApiError(400, unserved[1], param=unserved[0], code="model_not_available")
    return dict(given)


@router.get("")
def list_jobs(request: Request, limit: Limit = 20, after: str | None = None) -> Page[FineTuningJob]:
    store, _ = _state(request)
    wanted = {k[len("metadata[") : -1]: v for k, v in request.query_params.items() if k.startswith("metadata[")}
    jobs = [j for j in store.jobs() if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
    jobs = paging.after(jobs, after, lambda j: str(j["id"]))
    return Page(data=[FineTuningJob.model_validate(j) for j in jobs[:limit]], has_more=len(jobs) > limit)


@router.get("/{job_id}")
def retrieve_job(request: Request, job_id: str) -> FineTuningJob:
    return FineTuningJob.model_validate(_job(_state(request)[0], job_id))


@router.post("/{job_id}/cancel")
def cancel_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] in ("succeeded", "failed", "cancelled"):
        raise ApiError(400, f"Job {job_id} has already finished", param="fine_tuning_job_id")
    return runner.stop_job(job_id, "cancelled")


@router.post("/{job_id}/pause")
def pause_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] not in ("queued", "running", "validating_files"):
        raise ApiError(400, f"Job {job_id} is not running", param="fine_tuning_job_id")
    return runner.stop_job(job_id, "paused")


@router.post("/{job_id}/resume")
def resume_job(request: Request, job_id: str) -> FineTuningJob:
    store, runner = _state(request)
    if _job(store, job_id)["status"] != "paused":
        raise ApiError(400, f"Job {job_id} is not paused", param="fine_tuning_job_id")
    return runner.resume_job(job_id)


@router.get("/{job_id}/events")
def list_events(request: Request, job_id: str, limit: Limit = 20, after: str | None = None) -> Page[JobEvent]:
    store, _ = _state(request)
    _job(store, job_id)
    events = store.events(job_id)  # newest first, as OpenAI
    events = paging.after(events, after, lambda e: str(e["id"]))
    return Page(data=[JobEvent.model_validate(e) for e in events[:limit]], has_more=len(events) > limit)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(request: Request, job_id: str, limit: Limit = 10) -> CursorPage[Checkpoint]:
    store, _ = _state(request)
    _job(store, job_id)
    rows = store.checkpoints(job_id)
    data = [Checkpoint.of(row) for row in rows[:limit]]
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return CursorPage(data=data, has_more=len(rows) > limit, first_id=first, last_id=last)
