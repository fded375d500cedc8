"""Together's fine-tuning API (`/fine-tunes`, `/files/upload`, `/finetune/download`; its spec is in
../shared/together-spec) behind ftcli's verbs.

It is called through the `openai` client ftcli already builds (pointed at Together's base URL: its bearer key,
timeouts, retries and error classes, which service/errors.translate turns into ftcli's), not through Together's own
SDK: that would bring a second HTTP stack with its own errors and retries to map, for a dozen routes. Answers are
read as plain JSON and mapped onto the `openai` SDK's types (jobs, events, checkpoints, files), so views and `--json`
documents are the same on every backend; Together's own status stays in `backend_status`. This module sends and
receives; what the JSON means (statuses, request bodies, limits, the object mappers) is together_wire.py's.

One job per request: Together's create takes no metadata to tag a request with, so after a failure that may have
reached it, the jobs list is searched for one with the same model, training file and suffix, created since the
request was sent, before trying again; when the list itself can't be read, nothing is sent again
(service/jobs.create_once).
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.service.backends.base import PriceEstimate, WeightsFormat
from ftcli.service.backends.together_wire import (
    checkpoint_object,
    content_settings,
    create_body,
    download_name,
    estimate_body,
    event_object,
    file_object,
    job_object,
    limit_problems,
    made_since,
    metric_events,
    model_views,
    price_estimate,
    together_id,
)
from ftcli.service.errors import AuthError, BackendError, NotFound, UsageError, translated
from ftcli.service.jobs import JobRequest, create_once
from ftcli.service.settings import TOGETHER_KEY_ENV

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types import FileObject
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.data.training_content import TrainingContent
    from ftcli.service.files import ProgressCallback, UploadResult
    from ftcli.service.ledger import Ledger
    from ftcli.service.models import ModelView

FIND_WINDOW = 120.0  # seconds of clock difference tolerated when looking for a job a failed request created


class TogetherBackend:
    kind = "together"
    default_epochs: int | None = 1  # its spec's default for n_epochs

    def __init__(self, client: OpenAI, *, sleep: Any = time.sleep, clock: Any = time.time) -> None:
        self.client = client
        self._sleep, self._clock = sleep, clock
        self._known_limits: dict[str, dict[str, Any]] = {}

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
        return next((job_object(raw) for raw in listed if made_since(raw, body, since)), None)

    def price_estimate(self, request: JobRequest) -> PriceEstimate | None:
        """Together's quote, once the job is checked against the model's limits (an error names the setting)."""
        body = create_body(request)
        self._check_limits(body)
        return price_estimate(self._call("post", "/fine-tunes/estimate-price", body=estimate_body(body)))

    def start_from(self, request: JobRequest) -> JobRequest:
        """Together trains further from a job's model or checkpoint through `from_checkpoint` (`JOB_ID`,
        `OUTPUT_MODEL_NAME`, either with `:STEP`), the job's base as the model: `--model` naming a model one of the
        account's jobs made becomes that; `--from-checkpoint` is looked up to fill the model in (or to refuse one of
        another base than `--model`). Unknown names are refused before anything is uploaded."""
        if request.from_checkpoint is not None:
            job = self._job_of(request.from_checkpoint)
            if request.model and request.model != job.model:
                raise UsageError(
                    f"the checkpoint {request.from_checkpoint} is of {job.model}, not of {request.model}",
                    hint="leave --model out: the checkpoint names its base",
                )
            return replace(request, model=job.model)
        if self._known_model(request.model):
            return request
        made = next((job for job in self.list_jobs(limit=1 << 30) if job.fine_tuned_model == request.model), None)
        if made is None:
            raise UsageError(
                f"Together does not fine-tune {request.model}",
                hint="see `ftcli models --trainable` with this backend",
            )
        return replace(request, model=made.model, from_checkpoint=request.model)

    def _job_of(self, checkpoint: str) -> FineTuningJob:
        """The job whose model or checkpoint `checkpoint` names (`JOB_ID`, `OUTPUT_MODEL_NAME`, `…:STEP`)."""
        named, _, step = checkpoint.rpartition(":")
        named = named if named and step.isdigit() else checkpoint
        if named.startswith("ft-"):
            try:
                return self.get_job(named)
            except NotFound:
                raise UsageError(f"Together has no job {named} (from checkpoint {checkpoint})") from None
        made = next((job for job in self.list_jobs(limit=1 << 30) if job.fine_tuned_model == named), None)
        if made is None:
            raise UsageError(
                f"no job of this Together account made {named} (from checkpoint {checkpoint})",
                hint="name a checkpoint as JOB_ID, OUTPUT_MODEL_NAME, or either with :STEP (`ftcli status JOB "
                "--checkpoints`)",
            )
        return made

    def _known_model(self, model: str) -> bool:
        """Whether Together fine-tunes `model` as a base (it has limits for it)."""
        try:
            self._limits(model)
        except UsageError:
            return False
        return True

    def _check_limits(self, body: dict[str, Any]) -> None:
        model = str(body["model"])
        for problem in limit_problems(body, self._limits(model)):
            raise UsageError(f"{model} on Together: {problem}")

    def _limits(self, model: str) -> dict[str, Any]:
        """The model's limits (`/fine-tunes/models/limits`), asked once per model; a model Together doesn't
        fine-tune is refused."""
        if model not in self._known_limits:
            try:
                limits = self._call("get", "/fine-tunes/models/limits", options={"params": {"model_name": model}})
            except NotFound:
                raise UsageError(
                    f"Together does not fine-tune {model}", hint="see `ftcli models --trainable` with this backend"
                ) from None
            self._known_limits[model] = limits if isinstance(limits, dict) else {}
        return self._known_limits[model]

    def fit_request(self, request: JobRequest, content: TrainingContent | None) -> JobRequest:
        """Images train with Together's vision option; data Together would not train as written (images on a
        model without vision, reasoning on one that doesn't reason, reasoning before a conversation's last answer)
        is refused before the upload. An uploaded file's id is read back from Together to tell."""
        from ftcli.data.training_content import training_content

        if content is None:
            content = training_content(io.BytesIO(self.file_content(request.training_file)))
        if not (content.images.examples or content.reasoning.examples):
            return request  # plain text: nothing to ask Together about
        given = request.extra_hyperparameters
        settings = content_settings(request.model, content, self._limits(request.model), given)
        return replace(request, extra_hyperparameters={**given, **settings}) if settings else request

    def list_jobs(self, *, limit: int = 20) -> list[FineTuningJob]:
        listed = self._call("get", "/fine-tunes").get("data") or []
        jobs = sorted((job_object(raw) for raw in listed), key=lambda job: job.created_at, reverse=True)
        return jobs[:limit]

    def get_job(self, job_id: str) -> FineTuningJob:
        return job_object(self._call("get", f"/fine-tunes/{together_id(job_id)}"))

    def list_events(self, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]:
        """Together's events, and its training metrics as `metrics` events (the loss curve of `status`)."""
        raw_events = self._call("get", f"/fine-tunes/{together_id(job_id)}/events").get("data") or []
        events = [event_object(raw, index) for index, raw in enumerate(raw_events)]
        events += metric_events(self._metrics(job_id))
        events.sort(key=lambda event: event.created_at)
        return events[-limit:]

    def _metrics(self, job_id: str) -> list[dict[str, Any]]:
        try:
            answer = self._call("get", f"/fine-tunes/{together_id(job_id)}/metrics")
        except NotFound:
            return []
        metrics = answer.get("metrics") if isinstance(answer, dict) else None
        return [m for m in metrics or [] if isinstance(m, dict)]

    def list_checkpoints(self, job_id: str, *, limit: int = 20) -> list[FineTuningJobCheckpoint]:
        listed = self._call("get", f"/fine-tunes/{together_id(job_id)}/checkpoints").get("data") or []
        checkpoints = [checkpoint_object(raw, job_id) for raw in listed]
        return sorted(checkpoints, key=lambda c: c.step_number, reverse=True)[:limit]

    def cancel_job(self, job_id: str) -> FineTuningJob:
        self._call("post", f"/fine-tunes/{together_id(job_id)}/cancel")
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
        return file_object(self._call("get", f"/files/{together_id(file_id)}")).filename

    def file_content(self, file_id: str) -> bytes:
        response = self._raw(f"/files/{together_id(file_id)}/content")
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
        response = self._raw(
            "/finetune/download", params={"ft_id": together_id(job_id), "checkpoint": fmt}, headers=headers
        )
        try:
            if response.status_code == 416:  # nothing past what we have: it was complete
                return download_name(response, job_id, fmt)
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
            return download_name(response, job_id, fmt)
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
        answer = self._call("get", "/models")
        made_from = {job.fine_tuned_model: job.model for job in self.list_jobs(limit=1 << 30) if job.fine_tuned_model}
        return model_views(answer, made_from, fine_tuned_only=fine_tuned_only)

    # -- transport ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("cast_to", object)
        try:
            with translated():
                return getattr(self.client, method)(path, **kwargs)
        except AuthError as error:
            error.hint = f"set {TOGETHER_KEY_ENV}, or name the variable that holds the key in the profile"
            raise
