"""Together's fine-tuning API (`/fine-tunes`, `/files/upload`, `/finetune/download`; its spec is in
../shared/together-spec) behind ftcli's verbs.

It is called through the `openai` client ftcli already builds (pointed at Together's base URL: its bearer key,
timeouts, retries and error classes, which service/errors.translate turns into ftcli's), not through Together's own
SDK: that would bring a second HTTP stack with its own errors and retries to map, for a dozen routes. Answers are
read as plain JSON and mapped onto the `openai` SDK's types (jobs, events, checkpoints, files), so views and `--json`
documents are the same on every backend; Together's own status stays in `backend_status`.

One job per request: Together's create takes no metadata to tag a request with, so after a failure that may have
reached it, the jobs list is searched for one with the same model, training file and suffix, created since the
request was sent, before trying again; when the list itself can't be read, nothing is sent again
(service/jobs.create_once).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.service.backends.base import PriceEstimate, ProgressCallback, WeightsFormat
from ftcli.service.errors import AuthError, BackendError, NotFound, UsageError, translate
from ftcli.service.jobs import JobRequest, create_once
from ftcli.service.settings import TOGETHER_KEY_ENV

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types import FileObject
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.service.files import UploadResult
    from ftcli.service.ledger import Ledger
    from ftcli.service.models import ModelView

# Together's job statuses → OpenAI's; the original is kept in the job's `backend_status`.
STATUSES = {
    "pending": "queued",
    "queued": "queued",
    "running": "running",
    "compressing": "running",  # training is done; the weights are being packed
    "uploading": "running",
    "cancel_requested": "running",  # not over until Together says cancelled
    "cancelled": "cancelled",
    "error": "failed",
    "completed": "succeeded",
}
DEFAULT_LEARNING_RATE = 1e-5  # Together's default for `learning_rate`: OpenAI's multiplier scales it
# ftcli's names for a backend's own settings (`train -H key=value`) → Together's fields
RENAMED = {"lora_rank": "lora_r", "seed": "random_seed"}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_trainable_modules")
SFT_FIELDS = ("train_on_inputs",)
DPO_FIELDS = ("rpo_alpha", "dpo_normalize_logratios_by_length", "dpo_reference_free", "simpo_gamma")
# Top-level fields of Together's create request that `-H` may set (its spec; credentials such as wandb_api_key and
# hf_api_token are left out on purpose: ftcli never sends a secret given on a command line).
TOP_LEVEL = (
    "packing", "max_seq_length", "n_checkpoints", "n_evals", "learning_rate", "lr_scheduler", "warmup_ratio",
    "max_grad_norm", "weight_decay", "from_checkpoint", "from_hf_model", "hf_model_revision", "wandb_project_name",
    "wandb_name", "training_type", "multimodal_params",
)  # fmt: skip
FIND_WINDOW = 120.0  # seconds of clock difference tolerated when looking for a job a failed request created


class TogetherBackend:
    kind = "together"
    default_epochs: int | None = 1  # its spec's default for n_epochs

    def __init__(self, client: OpenAI, *, sleep: Any = time.sleep, clock: Any = time.time) -> None:
        self.client = client
        self._sleep, self._clock = sleep, clock

    def chat_client(self) -> OpenAI:
        return self.client  # Together's /chat/completions is OpenAI's protocol

    # -- files ----------------------------------------------------------------------------------------------

    def upload(
        self,
        path: Path,
        *,
        ledger: Ledger | None = None,
        force: bool = False,
        multipart: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadResult:
        from ftcli.data.digests import file_digests
        from ftcli.service.files import ProgressReader, UploadResult

        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        if multipart:
            raise UsageError("Together takes a file in one request", hint="drop --multipart")
        sha256, _ = file_digests(path, md5=False)
        if ledger is not None and not force and (reused := self._reuse(ledger, sha256)) is not None:
            return UploadResult(reused, sha256, reused=True, multipart=False)
        with path.open("rb") as raw:
            form = {"purpose": "fine-tune", "file_name": path.name, "file_type": "jsonl"}
            stream = (path.name, ProgressReader(raw, on_progress), "application/octet-stream")
            form_data = {"headers": {"Content-Type": "multipart/form-data"}}  # as the SDK's own files.create says
            answer = self._call("post", "/files/upload", body=form, files={"file": stream}, options=form_data)
        file = file_object(answer)
        if ledger is not None:
            ledger.remember_file(sha256, file.id, filename=path.name, size=path.stat().st_size)
        return UploadResult(file, sha256, reused=False, multipart=False)

    def _reuse(self, ledger: Ledger, sha256: str) -> FileObject | None:
        file_id = ledger.file_id(sha256)
        if file_id is None:
            return None
        try:
            return file_object(self._call("get", f"/files/{file_id}"))
        except NotFound:
            ledger.forget_file(sha256)  # deleted on Together: upload again
            return None

    # -- jobs -----------------------------------------------------------------------------------------------

    def create_job(self, request: JobRequest) -> FineTuningJob:
        body = create_body(request)
        once = self.client.with_options(max_retries=0)
        since = self._clock() - FIND_WINDOW

        def send() -> FineTuningJob:
            return self.get_job(str(once.post("/fine-tunes", body=body, cast_to=object)["id"]))  # type: ignore[index]

        sent_at = dt.datetime.fromtimestamp(since + FIND_WINDOW, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        suffix = f", suffix {body['suffix']}" if body.get("suffix") else " (no suffix)"
        return create_once(
            send,
            lambda: self._find_created(body, since=since),
            sleep=self._sleep,
            request=f"a job of {body['model']} on {body['training_file']}{suffix}, sent at {sent_at}; Together "
            "takes no request id",
            finder=f"ftcli status (a job of {body['model']} on {body['training_file']}{suffix} created since then)",
        )

    def _find_created(self, body: dict[str, Any], *, since: float) -> FineTuningJob | None:
        """The job a failed create made (same model, training file and suffix, created since it was sent); None
        when there is none, an FtcliError when the jobs can't be listed."""
        listed = self._call("get", "/fine-tunes").get("data") or []
        for raw in listed:
            same = all(raw.get(key) == body.get(key) for key in ("model", "training_file", "suffix"))
            if same and _epoch(raw.get("created_at")) >= since:
                return job_object(raw)
        return None

    def price_estimate(self, request: JobRequest) -> PriceEstimate | None:
        """Together's quote, once the job is checked against the model's limits (an error names the setting)."""
        full = create_body(request)
        self._check_limits(full)
        body = {key: value for key, value in full.items() if key in ESTIMATE_FIELDS}
        answer = self._call("post", "/fine-tunes/estimate-price", body=body)
        if not isinstance(answer, dict) or answer.get("estimated_total_price") is None:
            return None
        tokens = answer.get("estimated_train_token_count")
        return PriceEstimate(
            total_usd=float(answer["estimated_total_price"]),
            trained_tokens=int(tokens) if isinstance(tokens, int | float) else None,
            allowed=answer.get("allowed_to_proceed") is not False,
            details=answer,
        )

    def _check_limits(self, body: dict[str, Any]) -> None:
        model = str(body["model"])
        try:
            limits = self._call("get", "/fine-tunes/models/limits", options={"params": {"model_name": model}})
        except NotFound:
            raise UsageError(
                f"Together does not fine-tune {model}", hint="see `ftcli models --trainable` with this backend"
            ) from None
        for problem in limit_problems(body, limits if isinstance(limits, dict) else {}):
            raise UsageError(f"{model} on Together: {problem}")

    def list_jobs(self, *, limit: int = 20) -> list[FineTuningJob]:
        listed = self._call("get", "/fine-tunes").get("data") or []
        jobs = sorted((job_object(raw) for raw in listed), key=lambda job: job.created_at, reverse=True)
        return jobs[:limit]

    def get_job(self, job_id: str) -> FineTuningJob:
        return job_object(self._call("get", f"/fine-tunes/{_id(job_id)}"))

    def list_events(self, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]:
        """Together's events, and its training metrics as `metrics` events (the loss curve of `status`)."""
        raw_events = self._call("get", f"/fine-tunes/{_id(job_id)}/events").get("data") or []
        events = [event_object(raw, index) for index, raw in enumerate(raw_events)]
        events += metric_events(self._metrics(job_id))
        events.sort(key=lambda event: event.created_at)
        return events[-limit:]

    def _metrics(self, job_id: str) -> list[dict[str, Any]]:
        try:
            answer = self._call("get", f"/fine-tunes/{_id(job_id)}/metrics")
        except NotFound:
            return []
        metrics = answer.get("metrics") if isinstance(answer, dict) else None
        return [m for m in metrics or [] if isinstance(m, dict)]

    def list_checkpoints(self, job_id: str, *, limit: int = 20) -> list[FineTuningJobCheckpoint]:
        listed = self._call("get", f"/fine-tunes/{_id(job_id)}/checkpoints").get("data") or []
        checkpoints = [checkpoint_object(raw, job_id) for raw in listed]
        return sorted(checkpoints, key=lambda c: c.step_number, reverse=True)[:limit]

    def cancel_job(self, job_id: str) -> FineTuningJob:
        self._call("post", f"/fine-tunes/{_id(job_id)}/cancel")
        return self.get_job(job_id)

    def pause_job(self, job_id: str) -> FineTuningJob:
        raise UsageError("Together can't pause a job", hint=f"cancel it (`ftcli cancel {job_id}`), or let it run")

    def resume_job(self, job_id: str) -> FineTuningJob:
        raise UsageError("Together can't pause or resume a job", hint=f"{job_id} runs until it ends or is cancelled")

    # -- leaving Together (`ftcli export`) ------------------------------------------------------------------

    def iter_jobs(self, job_ids: list[str] | None = None) -> Iterator[FineTuningJob]:
        if job_ids:
            yield from (self.get_job(job_id) for job_id in job_ids)
        else:
            yield from self.list_jobs(limit=1 << 30)  # Together lists every job in one answer

    def all_events(self, job_id: str) -> list[FineTuningJobEvent]:
        return self.list_events(job_id, limit=1 << 30)

    def file_name(self, file_id: str) -> str:
        return file_object(self._call("get", f"/files/{_id(file_id)}")).filename

    def file_content(self, file_id: str) -> bytes:
        response = self._raw(f"/files/{_id(file_id)}/content")
        try:
            return bytes(response.read())
        finally:
            response.close()

    def check_weights(self, fmt: WeightsFormat) -> None:
        """Together gives out both: the adapter and the merged model."""

    def download_weights(
        self,
        job_id: str,
        fmt: WeightsFormat,
        partial: Path,
        *,
        on_progress: ProgressCallback | None = None,
        max_bytes: int | None = None,
    ) -> str:
        """`/finetune/download` streamed into `partial`; a cut download continues with a Range request (started
        over when Together answers the whole file instead). Checked against `max_bytes` and the free space before a
        byte is written (by its Content-Length), and counted while it streams."""
        import httpx2

        from ftcli.service.weights_archive import BYTES_FLAG, ensure_free_space

        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        response = self._raw("/finetune/download", params={"ft_id": _id(job_id), "checkpoint": fmt}, headers=headers)
        try:
            if response.status_code == 416:  # nothing past what we have: it was complete
                return _download_name(response, job_id, fmt)
            resumed = response.status_code == 206
            start = have if resumed else 0
            length = response.headers.get("content-length", "")
            coming = int(length) if length.isdigit() else None

            def too_big(total: int) -> BackendError:
                partial.unlink(missing_ok=True)
                return BackendError(
                    f"{job_id}'s weights are over {max_bytes:,} bytes ({total:,} or more); download stopped, "
                    "nothing kept",
                    hint=f"if the model is that large, raise {BYTES_FLAG}",
                )

            if coming is not None:
                if max_bytes is not None and start + coming > max_bytes:
                    raise too_big(start + coming)
                ensure_free_space(partial.parent, coming, f"the download of {job_id}'s weights")
            with partial.open("ab" if resumed else "wb") as sink:
                try:
                    for block in response.iter_bytes():  # as they arrive: a cut keeps every byte received
                        sink.write(block)
                        if max_bytes is not None and (total := sink.tell()) > max_bytes:
                            sink.close()
                            raise too_big(total)
                        if on_progress:
                            on_progress(len(block))
                except httpx2.HTTPError:
                    raise BackendError(
                        f"the download of {job_id}'s weights was cut after {sink.tell():,} bytes",
                        hint="run the same export again: it continues where it stopped",
                    ) from None
            return _download_name(response, job_id, fmt)
        finally:
            response.close()

    def _raw(self, path: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """A streamed response (not parsed as JSON), errors translated."""
        import httpx2

        options: dict[str, Any] = {"headers": {"X-Stainless-Raw-Response": "stream", **(headers or {})}}
        if params:
            options["params"] = params
        return self._call("get", path, cast_to=httpx2.Response, options=options)

    def trainable_models(self) -> list[str]:
        models = self._call("get", "/fine-tunes/models/supported").get("models") or []
        return [str(m) for m in models]

    def list_models(self, *, fine_tuned_only: bool = False) -> list[ModelView]:
        """Together's `GET /models`, a bare JSON list (which the `openai` SDK's `models.list()` can't read), read
        as plain JSON. A model is fine-tuned when one of the account's jobs made it (its `model_output_name`); its
        base model is that job's."""
        from ftcli.service.models import ModelView, shutdown_of

        answer = self._call("get", "/models")
        listed = answer if isinstance(answer, list) else _mapping(answer).get("data") or []
        made_from = {job.fine_tuned_model: job.model for job in self.list_jobs(limit=1 << 30) if job.fine_tuned_model}
        views = []
        for raw in listed:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            model_id = str(raw["id"])
            fine_tuned = model_id in made_from
            if fine_tuned_only and not fine_tuned:
                continue
            date, source = shutdown_of(model_id)
            created = raw.get("created")
            views.append(
                ModelView(
                    model_id,
                    str(raw["organization"]) if raw.get("organization") else None,
                    int(created) if isinstance(created, int | float) else None,
                    made_from.get(model_id, model_id),
                    fine_tuned,
                    date,
                    source,
                )
            )
        return views

    # -- transport ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import openai

        kwargs.setdefault("cast_to", object)
        try:
            return getattr(self.client, method)(path, **kwargs)
        except openai.OpenAIError as exc:
            error = translate(exc)
            if isinstance(error, AuthError):
                error.hint = f"set {TOGETHER_KEY_ENV}, or name the variable that holds the key in the profile"
            raise error from None


ESTIMATE_FIELDS = (
    "training_file", "validation_file", "model", "n_epochs", "n_evals", "training_method", "training_type",
    "from_checkpoint",
)  # fmt: skip


def create_body(request: JobRequest) -> dict[str, Any]:
    """ftcli's job request as Together's `POST /fine-tunes` body (field names from its spec)."""
    request.validate()
    extra = {RENAMED.get(key, key): value for key, value in request.extra_hyperparameters.items()}
    if request.method == "dpo":
        method: dict[str, Any] = {"method": "dpo", "dpo_beta": request.beta if request.beta is not None else 0.1}
        method.update({key: extra.pop(key) for key in DPO_FIELDS if key in extra})
    else:
        method = {"method": "sft", "train_on_inputs": extra.pop("train_on_inputs", "auto")}
    lora = {key: extra.pop(key) for key in LORA_FIELDS if key in extra}
    training_type = extra.pop("training_type", None)
    if isinstance(training_type, str):  # `-H training_type=full` or `lora`
        if training_type.lower() not in ("full", "lora"):
            raise UsageError("training_type must be full or lora", hint="-H training_type=full")
        training_type = {"type": "Full"} if training_type.lower() == "full" else None
    if training_type is None:
        training_type = {"type": "Lora", "lora_r": lora.get("lora_r", 16), "lora_alpha": lora.get("lora_alpha", 32)}
        training_type.update({k: v for k, v in lora.items() if k not in ("lora_r", "lora_alpha")})
    elif lora:
        raise UsageError("LoRA settings apply to LoRA training", hint="drop training_type=full or the lora_* values")
    unknown = sorted(set(extra) - set(TOP_LEVEL) - {"random_seed"})
    if unknown:
        raise UsageError(
            f"Together has no setting {', '.join(unknown)}",
            hint="settings it takes: "
            + ", ".join(sorted({*TOP_LEVEL, *RENAMED, *LORA_FIELDS, *SFT_FIELDS, *DPO_FIELDS})),
        )
    body: dict[str, Any] = {
        "model": request.model,
        "training_file": request.training_file,
        "training_method": method,
        "training_type": training_type,
        **extra,
    }
    optional = {
        "validation_file": request.validation_file,
        "n_epochs": request.n_epochs,
        "batch_size": request.batch_size,
        "suffix": request.suffix,
        "random_seed": request.seed,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.learning_rate_multiplier is not None and "learning_rate" not in body:
        body["learning_rate"] = DEFAULT_LEARNING_RATE * request.learning_rate_multiplier
    if request.validation_file and "n_evals" not in body:
        body["n_evals"] = 1  # Together evaluates only when asked; OpenAI reports a validation loss by default
    return body


def limit_problems(body: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    """What in a create request breaks the model's limits (`/fine-tunes/models/limits`), each naming its setting."""
    problems = []
    lora = body.get("training_type", {}).get("type") == "Lora"
    kind = _mapping(limits.get("lora_training" if lora else "full_training"))
    dpo = body.get("training_method", {}).get("method") == "dpo"
    checks: list[tuple[str, Any, Any, Any]] = [
        ("n_epochs", body.get("n_epochs"), 1, limits.get("max_num_epochs")),
        ("n_evals", body.get("n_evals"), 0, limits.get("max_num_evals")),
        ("batch_size", body.get("batch_size"), kind.get("min_batch_size"),
         kind.get("max_batch_size_dpo" if dpo else "max_batch_size")),
        ("lora_rank", body.get("training_type", {}).get("lora_r") if lora else None, 1, kind.get("max_rank")),
        ("learning_rate", body.get("learning_rate"), limits.get("min_learning_rate"), limits.get("max_learning_rate")),
    ]  # fmt: skip
    for name, value, low, high in checks:
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        numbers = [b for b in (low, high) if isinstance(b, int | float)]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            continue  # limits that contradict themselves say nothing
        if isinstance(low, int | float) and value < low:
            problems.append(f"{name} {value:g} is below its minimum {low:g}")
        if isinstance(high, int | float) and value > high:
            problems.append(f"{name} {value:g} is above its maximum {high:g}")
    return problems


# -- Together's objects as the openai SDK's -------------------------------------------------------------------


def job_object(raw: dict[str, Any]) -> FineTuningJob:
    from openai.types.fine_tuning import FineTuningJob

    status = str(raw.get("status") or "pending")
    mapped = STATUSES.get(status, "running")
    method = _mapping(raw.get("training_method"))
    dpo = method.get("method") == "dpo"
    progress = _mapping(raw.get("progress"))
    remaining = progress.get("seconds_remaining") if progress.get("estimate_available") else None
    hyper = {"n_epochs": raw.get("n_epochs") or "auto", "batch_size": raw.get("batch_size") or "auto"}
    if raw.get("learning_rate") is not None:
        hyper["learning_rate_multiplier"] = float(raw["learning_rate"]) / DEFAULT_LEARNING_RATE
    failure = _failure(raw) if mapped == "failed" else None
    updated = _epoch(raw.get("updated_at"))
    return FineTuningJob.model_construct(
        id=str(raw["id"]),
        object="fine_tuning.job",
        created_at=_epoch(raw.get("created_at")),
        error=failure,
        fine_tuned_model=raw.get("model_output_name") if mapped == "succeeded" else None,
        finished_at=updated if mapped in ("succeeded", "failed", "cancelled") and updated else None,
        hyperparameters=hyper,
        model=str(raw.get("model") or ""),
        organization_id=str(raw.get("user_id") or raw.get("owner_address") or "together"),
        result_files=[],
        seed=int(raw.get("random_seed") or 0),
        status=mapped,
        trained_tokens=raw.get("token_count"),
        training_file=str(raw.get("training_file") or ""),
        validation_file=raw.get("validation_file"),
        estimated_finish=int(time.time() + remaining) if isinstance(remaining, int | float) else None,
        method={"type": "dpo" if dpo else "supervised"},
        metadata=None,
        user_provided_suffix=raw.get("suffix"),
        backend_status=status,
    )


def _failure(raw: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in raw.get("events") or [] if isinstance(e, dict)]
    errors = [e for e in events if e.get("type") == "job_error" or e.get("level") == "error"]
    message = str(errors[-1].get("message")) if errors else "the job failed on Together (no error event was given)"
    return {"code": "together_error", "message": message, "param": None}


def event_object(raw: dict[str, Any], index: int) -> FineTuningJobEvent:
    from openai.types.fine_tuning import FineTuningJobEvent

    level = {"warning": "warn", "legacy_iwarning": "warn", "error": "error", "legacy_ierror": "error"}
    created = _epoch(raw.get("created_at"))
    return FineTuningJobEvent.model_construct(
        id=str(raw.get("hash") or f"event-{created}-{index}"),
        object="fine_tuning.job.event",
        created_at=created,
        level=level.get(str(raw.get("level")), "info"),
        message=str(raw.get("message") or raw.get("type") or ""),
        type="message",
        data={"together_type": raw.get("type"), "step": raw.get("step")},
    )


def metric_events(metrics: list[dict[str, Any]]) -> list[FineTuningJobEvent]:
    """Together's metrics snapshots (`train/loss`, `train/global_step`, …) as OpenAI's `metrics` events."""
    from openai.types.fine_tuning import FineTuningJobEvent

    events = []
    for index, snapshot in enumerate(metrics):
        step = snapshot.get("train/global_step", index + 1)
        data: dict[str, Any] = {"step": int(step)}
        if snapshot.get("train/loss") is not None:
            data["train_loss"] = float(snapshot["train/loss"])
        if snapshot.get("eval/loss") is not None:
            data["valid_loss"] = float(snapshot["eval/loss"])
        events.append(
            FineTuningJobEvent.model_construct(
                id=f"metrics-{int(step)}",
                object="fine_tuning.job.event",
                created_at=0,
                level="info",
                message=f"Step {int(step)}",
                type="metrics",
                data=data,
            )
        )
    return events


def checkpoint_object(raw: dict[str, Any], job_id: str) -> FineTuningJobCheckpoint:
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    step = int(raw.get("step") or 0)
    return FineTuningJobCheckpoint.model_construct(
        id=f"{job_id}:{step}",
        object="fine_tuning.job.checkpoint",
        created_at=_epoch(raw.get("created_at")),
        fine_tuned_model_checkpoint=str(raw.get("path") or f"{job_id}:{step}"),
        fine_tuning_job_id=job_id,
        metrics={},
        step_number=step,
        checkpoint_type=raw.get("checkpoint_type"),
    )


def file_object(raw: dict[str, Any]) -> FileObject:
    from openai.types import FileObject

    return FileObject.model_construct(
        id=str(raw["id"]),
        object="file",
        bytes=int(raw.get("bytes") or 0),
        created_at=int(raw.get("created_at") or 0),
        filename=str(raw.get("filename") or ""),
        purpose=str(raw.get("purpose") or "fine-tune"),
        status="processed" if raw.get("Processed") else "uploaded",
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _epoch(value: Any) -> int:
    """Together writes times as ISO 8601 strings (or, for files, seconds)."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0


def _download_name(response: Any, job_id: str, fmt: str) -> str:
    """The file name Together gives (Content-Disposition), reduced to a plain name; else one of ours."""
    import re

    disposition = response.headers.get("content-disposition", "")
    found = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
    name = Path(found[1]).name if found else ""
    if not name or name.startswith(".") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", name):
        name = f"{job_id}-{fmt}.tar.zst"
    return name


def _id(job_id: str) -> str:
    if not job_id or not job_id.strip() or "/" in job_id:
        raise UsageError(f"not a Together job id: {job_id!r}")
    return job_id
