"""Fine-tuning jobs: create (never twice), list, get, events, checkpoints, cancel/pause/resume, wait.

Job status is kept as a plain string: `paused` is a real status that the SDK's enum lacks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ftcli.service.errors import BackendError, FtcliError, RateLimited, UsageError, translate, translated

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}  # `status --wait` and `train --wait`
REQUEST_TAG = "ftcli_request_id"
MAX_SUFFIX = 64
MAX_METADATA = 16


# The hyperparameters that are options of `train` (each with its flag), not `-H key=value`: OpenAI's own.
OPTION_FLAGS = {
    "n_epochs": "epochs",
    "batch_size": "batch-size",
    "learning_rate_multiplier": "lr-multiplier",
    "beta": "beta",
}


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A fine-tuning job as asked for, from `train`'s options to the backend's request body. None means the
    backend's default. As `train` gives it to `service/training.prepare`, the files may be local paths (each becomes
    an uploaded file's id) and, with `--from-export`, the training file "" and the method None (the exported job's
    fill them); the prepared request always has file ids and a method."""

    model: str  # "" where `from_checkpoint` names the start and the backend tells the base (Backend.start_from)
    training_file: str = ""
    validation_file: str | None = None
    method: str | None = None  # "sft" | "dpo" | "reinforcement"; None: sft
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    beta: float | None = None  # dpo only
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extra_hyperparameters: dict[str, Any] = field(default_factory=dict)  # a backend's own (`train -H key=value`)
    grader: dict[str, Any] | None = None  # reinforcement only: OpenAI's grader JSON, sent as given once it validates
    # a checkpoint of an earlier job to train further (`train --from-checkpoint`), as the backend names it; OpenAI's
    # protocol takes it as the job's model (Backend.start_from), Together as its `from_checkpoint`
    from_checkpoint: str | None = None

    @property
    def method_type(self) -> str:
        """The method as OpenAI's API names it: "supervised", "dpo" or "reinforcement"."""
        return self.method if self.method in ("dpo", "reinforcement") else "supervised"

    def validate(self) -> None:
        if self.method not in (None, "sft", "dpo", "reinforcement"):
            raise UsageError(f"method must be sft, dpo or reinforcement, not {self.method!r}")
        if self.beta is not None and self.method != "dpo":
            raise UsageError("--beta applies to dpo only")
        if self.method == "reinforcement":
            if self.grader is None:
                raise UsageError("reinforcement fine-tuning needs a grader", hint="--grader-file grader.json")
            from ftcli.data.graders.spec import parse_grader

            parse_grader(self.grader)  # a GraderError (exit 2) names the field at fault
        elif self.grader is not None:
            raise UsageError("a grader is for reinforcement fine-tuning", hint="--method reinforcement")
        if self.suffix is not None and not 0 < len(self.suffix) <= MAX_SUFFIX:
            raise UsageError(f"suffix must be 1 to {MAX_SUFFIX} characters, got {len(self.suffix)}")
        if len(self.metadata) > MAX_METADATA - 1:  # one pair is ftcli's request tag
            raise UsageError(f"at most {MAX_METADATA - 1} metadata pairs")
        for key, value in self.metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise UsageError(f"metadata {key!r}: keys are at most 64 characters, values 512")
        for label, count in (("epochs", self.n_epochs), ("batch size", self.batch_size)):
            if count is not None and count < 1:
                raise UsageError(f"{label} must be at least 1")
        if self.learning_rate_multiplier is not None and self.learning_rate_multiplier <= 0:
            raise UsageError("learning rate multiplier must be positive")
        for key in self.extra_hyperparameters:
            if key in OPTION_FLAGS:
                raise UsageError(f"-H {key}=... duplicates an option", hint=f"use --{OPTION_FLAGS[key]}")

    def options(self) -> dict[str, Any]:
        """The hyperparameters set with options (`--epochs`, …), by their API names."""
        return {key: getattr(self, key) for key in OPTION_FLAGS if getattr(self, key) is not None}

    def create_params(self, tag: str) -> dict[str, Any]:
        """The request body: hyperparameters go in `method` (the top-level `hyperparameters` is deprecated)."""
        hyper: dict[str, Any] = {**self.extra_hyperparameters, **self.options()}
        kind = self.method_type
        settings: dict[str, Any] = {"grader": self.grader} if kind == "reinforcement" else {}
        params: dict[str, Any] = {
            "model": self.model,
            "training_file": self.training_file,
            "method": {"type": kind, kind: {**settings, "hyperparameters": hyper}},
            "metadata": {**self.metadata, REQUEST_TAG: tag},
        }
        optional: dict[str, Any] = {"validation_file": self.validation_file, "suffix": self.suffix, "seed": self.seed}
        params.update({key: value for key, value in optional.items() if value is not None})
        return params


def create_job(
    client: OpenAI,
    request: JobRequest,
    *,
    attempts: int = 3,
    tag: str | None = None,
    sleep: Callable[[float], None] | None = None,
) -> FineTuningJob:
    """Create a job exactly once, even across timeouts and retries.

    The SDK retries POSTs without an idempotency key, so a timed-out create may still have made a job. We send
    with the SDK's retries off and a unique tag in `metadata`; after a failure that may have reached the server,
    we look the tag up before trying again (and stop, naming the tag, when the lookup itself keeps failing).
    """
    request.validate()
    if request.from_checkpoint is not None:  # never dropped on the way: the job would start from the base
        raise UsageError(
            "OpenAI's protocol has no from_checkpoint: the checkpoint's model name is the job's model",
            hint=f"--model {request.from_checkpoint}",
        )
    tag = tag or uuid.uuid4().hex
    params = request.create_params(tag)
    once = client.with_options(max_retries=0)
    return create_once(
        lambda: once.fine_tuning.jobs.create(**params),
        lambda: find_by_tag(client, tag),
        attempts=attempts,
        sleep=sleep,
        request=f"request id {tag} (metadata {REQUEST_TAG})",
        finder=f"ftcli --json status --limit 100 | grep {tag}",
    )


T = TypeVar("T")
LOOKUPS = 3  # tries of "did my create reach the backend?" before giving up without sending again


def create_once(
    send: Callable[[], T],
    find: Callable[[], T | None],
    *,
    request: str,
    finder: str,
    attempts: int = 3,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """`send` a create request (its client's retries off) until it succeeds; after each failure that may have
    reached the backend (a dropped connection, a timeout, 5xx, 429), `find` what it may have created before sending
    again, so nothing is created twice. `find` answers None when it looked and found nothing, and raises when it
    could not look: after LOOKUPS such failures this stops with a BackendError naming `request` (what identifies it)
    and `finder` (the command that finds the job), and sends nothing more. A 429 waits as long as its Retry-After
    says (at most 30 s)."""
    import openai

    sleep = sleep or time.sleep
    last: BaseException | None = None
    for _ in range(attempts):
        with translated():  # what can't have reached the backend (a 400, 401, …) stops at once
            try:
                return send()
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as exc:
                last = exc
                found = _look_up(find, sleep, request=request, finder=finder, cause=translate(exc))
                if found is not None:
                    return found
                if isinstance(exc, openai.RateLimitError):
                    sleep(min(float(exc.response.headers.get("retry-after", 1) or 1), 30))
    assert last is not None
    error = translate(last)
    raise BackendError(f"could not create the job: {error.message}", hint="no job was created; retry")


def _look_up(
    find: Callable[[], T | None], sleep: Callable[[float], None], *, request: str, finder: str, cause: FtcliError
) -> T | None:
    """`find`, tried LOOKUPS times (1 s, then 2 s apart) while it fails; then a refusal to go on blind."""
    failure: FtcliError | None = None
    for attempt in range(LOOKUPS):
        try:
            with translated():
                return find()
        except FtcliError as exc:
            failure = exc
        if attempt + 1 < LOOKUPS:
            sleep(float(2**attempt))
    assert failure is not None
    raise BackendError(
        f"the create request failed ({cause.message}) but may have reached the backend, and looking for the job it "
        f"may have made failed {LOOKUPS} times ({failure.message}); not sent again, so that no second job is made "
        f"({request})",
        hint=f"see whether it was created before training again: {finder}",
    )


def find_by_tag(client: OpenAI, tag: str) -> FineTuningJob | None:
    """The job created with this request tag; None when there is none, an FtcliError when the lookup fails."""
    page = _call(client.fine_tuning.jobs.list, metadata={REQUEST_TAG: tag}, limit=5)
    return next((job for job in page.data if (job.metadata or {}).get(REQUEST_TAG) == tag), None)


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with translated():
        return function(*args, **kwargs)


def list_jobs(client: OpenAI, *, limit: int = 20) -> list[FineTuningJob]:
    return list(_call(client.fine_tuning.jobs.list, limit=limit).data)


def get_job(client: OpenAI, job_id: str) -> FineTuningJob:
    _require(job_id)
    return _call(client.fine_tuning.jobs.retrieve, job_id)  # type: ignore[no-any-return]


def list_events(client: OpenAI, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]:
    """Events oldest first (the API returns newest first)."""
    _require(job_id)
    return list(reversed(_call(client.fine_tuning.jobs.list_events, job_id, limit=limit).data))


def list_checkpoints(client: OpenAI, job_id: str, *, limit: int = 20) -> list[FineTuningJobCheckpoint]:
    _require(job_id)
    return list(_call(client.fine_tuning.jobs.checkpoints.list, job_id, limit=limit).data)


def cancel_job(client: OpenAI, job_id: str) -> FineTuningJob:
    _require(job_id)
    return _call(client.fine_tuning.jobs.cancel, job_id)  # type: ignore[no-any-return]


def pause_job(client: OpenAI, job_id: str) -> FineTuningJob:
    _require(job_id)
    return _call(client.fine_tuning.jobs.pause, job_id)  # type: ignore[no-any-return]


def resume_job(client: OpenAI, job_id: str) -> FineTuningJob:
    _require(job_id)
    return _call(client.fine_tuning.jobs.resume, job_id)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Progress:
    """One update of `wait_for_job`: the job as last seen, and events new since the previous update."""

    job: FineTuningJob
    new_events: list[FineTuningJobEvent]
    step: int | None = None
    train_loss: float | None = None

    @property
    def status(self) -> str:
        return str(self.job.status)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class JobSource(Protocol):
    """What waiting needs of a backend (service/backends.base.Backend has it)."""

    def get_job(self, job_id: str) -> FineTuningJob: ...

    def list_events(self, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]: ...


def wait_for_job(
    backend: JobSource,
    job_id: str,
    *,
    interval: float = 5.0,
    max_interval: float = 30.0,
    sleep: Callable[[float], None] | None = None,
    max_transient_errors: int = 20,
) -> Iterator[Progress]:
    """Yield progress until the job ends. Transient failures (5xx, 429, dropped connections) are ridden through
    with backoff; the last update has `done` set."""
    sleep = sleep or time.sleep  # looked up at call time, so tests can stub the clock
    seen: set[str] = set()
    step: int | None = None
    loss: float | None = None
    errors = 0
    delay = interval
    while True:
        try:
            job = backend.get_job(job_id)
            events = [e for e in backend.list_events(job_id) if e.id not in seen]
        except (BackendError, RateLimited):
            errors += 1
            if errors > max_transient_errors:
                raise
            sleep(min(max_interval, delay * 2 ** min(errors, 4)))
            continue
        errors = 0
        for event in events:
            seen.add(event.id)
            data = event.data if isinstance(event.data, dict) else {}
            if event.type == "metrics" and "step" in data:
                step, loss = int(data["step"]), _float(data.get("train_loss"))
        progress = Progress(job=job, new_events=events, step=step, train_loss=loss)
        yield progress
        if progress.done:
            return
        sleep(delay)
        delay = min(max_interval, delay * 1.5)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _require(job_id: str) -> None:
    if not job_id or not job_id.strip():
        raise UsageError("a job id is required")
