"""`train` as operations of the service layer: `prepare` (re-train an export with its data, method and
hyperparameters carried over; check and upload local files, reusing identical bytes; build and validate the job
request), then `start` (create the job exactly once and record its run manifest). Between the two the caller shows
the estimate and asks for confirmation; upload progress reaches it through a callback. Nothing here prints.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.data import hyperparameters
from ftcli.data.check.engine import CheckOptions, stream_method
from ftcli.data.training_content import TrainingContent, file_content, training_content
from ftcli.service.errors import AuthError, BackendError, FtcliError, RateLimited, UsageError
from ftcli.service.files import ProgressCallback, check_before_upload
from ftcli.service.jobs import OPTION_FLAGS, JobRequest
from ftcli.service.manifest import RunManifest

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob

    from ftcli.data.check.report import Report
    from ftcli.service.backends.base import Backend, PriceEstimate
    from ftcli.service.job_export import ExportedJob
    from ftcli.service.ledger import Ledger
    from ftcli.service.settings import Settings

# Called as a local file starts uploading: a context around the upload that takes byte counts (a progress bar).
UploadProgress = Callable[[Path], AbstractContextManager[ProgressCallback | None]]


@dataclass(frozen=True, slots=True)
class TrainingFile:
    file_id: str
    path: str | None = None  # the local file it was uploaded from
    sha256: str | None = None
    report: Report | None = None  # its check, for a local training file (with the validation file's findings)


@dataclass(frozen=True, slots=True)
class PreparedJob:
    request: JobRequest
    training: TrainingFile
    validation: TrainingFile | None
    exported: ExportedJob | None
    quote: PriceEstimate | None = None  # the backend's own price, where it quotes one (Together)

    @property
    def report(self) -> Report | None:
        return self.training.report


def prepare(
    backend: Backend,
    request: JobRequest,
    *,
    from_export: Path | None = None,
    ledger: Ledger | None = None,
    progress: UploadProgress | None = None,
    ftcli_server: bool = False,
) -> PreparedJob:
    """Everything before the job is created: an export's settings filled in where `request` leaves them unset
    (`from_export`: OUT/<job-id> of `ftcli export`), the request validated and its hyperparameters checked against
    what the backend takes (`ftcli_server`: the backend is an `ftcli serve`, whose schema is known), then local files
    checked (errors refuse), what the data holds put to the backend (`Backend.fit_request`: images, reasoning), the
    files uploaded, and the backend's own price asked for where it quotes one. Without a method, the training file's
    records decide it as `check` decides it (data/check/engine.file_method): a local file's, or an uploaded one's read
    back from the backend (refused, naming --method, where the backend won't give it back)."""
    request, exported = _with_export(request, from_export, backend.kind)
    if not request.training_file:
        raise UsageError("--file is required", hint="or --from-export OUT/<job-id> to re-train an exported job")
    if not request.model and request.from_checkpoint is None:
        raise UsageError("--model is required", hint="or --from-checkpoint CHECKPOINT to train a checkpoint further")
    training_path = _local_file(request.training_file)
    validation_path = _local_file(request.validation_file) if request.validation_file else None
    given = request.method  # None: the training file's records decide it, as `check` decides it
    uploaded = None  # an uploaded training file's bytes, read back from the backend to tell its method
    if given is None and training_path is None:
        uploaded = _uploaded_content(backend, request.training_file)
    if given is not None:
        method = given
    elif training_path is not None:
        method = _method_of(training_path) or "sft"
    else:
        method = stream_method(io.BytesIO(uploaded or b"")) or "sft"  # no record: the backend refuses the file
    request = replace(request, method=method)
    # checked before anything is sent: the files are still as given (paths or ids)
    request.validate()
    check_hyperparameters(request, backend.kind, ftcli_server=ftcli_server)
    # a job that continues a fine-tuned model or checkpoint, as the backend takes one (unknown ones refused here)
    request = backend.start_from(request)

    length = request.extra_hyperparameters.get("max_seq_length")
    counting = CheckOptions(
        model=request.model,
        method=given,
        grader=request.grader,  # reinforcement: every field the grader reads is looked for in every record
        grader_file="GRADER.json",
        epochs=request.n_epochs if request.n_epochs is not None else backend.default_epochs,
        max_seq_length=length if isinstance(length, int) else None,
    )
    # Both files are checked before either is sent, together as `check FILE --validation VAL` checks them (errors
    # refuse); a validation file alone (the training file an uploaded id) is checked against the job's method.
    report = None
    if training_path is not None:
        report = check_before_upload(training_path, counting, validation=validation_path, skip_option=None)
    elif validation_path is not None:
        check_before_upload(validation_path, replace(counting, method=method), skip_option=None)

    # what the data holds that the backend may not train as written (images, reasoning): refused, or the settings
    # that train it (Together's vision option), before anything is sent
    content: TrainingContent | None = None  # an uploaded file's id nobody has read: the backend reads it if it must
    if training_path is not None:
        content = file_content(*(path for path in (training_path, validation_path) if path is not None))
    elif uploaded is not None:
        content = training_content(io.BytesIO(uploaded))
    request = backend.fit_request(request, content)

    def resolve(value: str, path: Path | None, checked: Report | None = None) -> TrainingFile:
        return _upload(backend, value, path, checked, ledger, progress)

    training = resolve(request.training_file, training_path, report)
    validation = resolve(request.validation_file, validation_path) if request.validation_file else None
    request = replace(
        request, training_file=training.file_id, validation_file=validation.file_id if validation else None
    )
    return PreparedJob(request, training, validation, exported, quote=backend.price_estimate(request))


def is_ftcli_server(settings: Settings) -> bool:
    """Whether the backend is an `ftcli serve` of this user on this machine (it left its runtime file): its
    hyperparameters' schema is then known here. (Another machine's ftcli serve refuses bad ones itself, with a 400
    naming the field.)"""
    from ftcli.data.local_server import announcement

    return settings.kind == "compatible" and announcement(settings.base_url) is not None


def check_hyperparameters(request: JobRequest, backend_kind: str, *, ftcli_server: bool = False) -> None:
    """Refuse, before anything is sent, hyperparameters the backend doesn't take, naming those it does: OpenAI and
    Azure take only OpenAI's own (set with options, not -H); Together's mapping refuses names it lacks; an ftcli serve
    checks every value against its schema (data/hyperparameters.py). Another compatible server's are its business."""
    method = request.method_type
    if backend_kind == "together":
        from ftcli.service.backends.together_wire import create_body

        create_body(request)  # the wire mapping, pure: refuses a setting Together lacks, listing the ones it takes
    elif backend_kind in ("openai", "azure") and request.extra_hyperparameters:
        name = "OpenAI" if backend_kind == "openai" else "Azure OpenAI"
        own = sorted(set(request.extra_hyperparameters) - set(hyperparameters.openai_keys(method)))
        if own:  # OpenAI's keys other than the options' (reinforcement's eval_interval, …) are set with -H
            options = "--epochs, --batch-size, --lr-multiplier" + (", --beta" if method == "dpo" else "")
            by_h = [key for key in hyperparameters.openai_keys(method) if key not in OPTION_FLAGS]
            raise UsageError(
                f"{name} takes no hyperparameter {', '.join(own)}",
                hint=f"it takes {', '.join(hyperparameters.openai_keys(method))}, set with {options}"
                + (f" and -H ({', '.join(by_h)})" if by_h else ""),
            )
        hyperparameters.parse(method, request.extra_hyperparameters)  # OpenAI's bounds, before anything is sent
    elif ftcli_server:
        hyperparameters.parse(method, request.create_params(tag="")["method"][method]["hyperparameters"])


def start(backend: Backend, prepared: PreparedJob, *, described: dict[str, str | None]) -> FineTuningJob:
    """Create the job (once, through retries) and write its run manifest (`.ftcli/runs/<job-id>.json`)."""
    request, report = prepared.request, prepared.report
    job = backend.create_job(request)
    RunManifest(
        job_id=job.id,
        backend=described,
        model=request.model,
        method=request.method or "sft",
        training_file={
            "path": prepared.training.path,
            "sha256": prepared.training.sha256,
            "file_id": prepared.training.file_id,
        },
        validation_file={"file_id": prepared.validation.file_id} if prepared.validation else None,
        parameters=request.create_params(tag="")["method"],
        check={"examples": report.examples, "errors": report.errors, "warnings": report.warnings} if report else None,
        estimate=report.estimate.to_dict() if report else None,
        request_tag=(job.metadata or {}).get("ftcli_request_id"),
        status=str(job.status),
        retrain_of=prepared.exported.link() if prepared.exported else None,
    ).save()
    return job


def _with_export(
    request: JobRequest, from_export: Path | None, backend_kind: str
) -> tuple[JobRequest, ExportedJob | None]:
    """The request with what an exported job carries filled in wherever the user left it unset."""
    if from_export is None:
        return request, None
    from ftcli.service.job_export import load_export

    exported = load_export(from_export)
    carried = {**exported.carried_parameters(backend_kind), "seed": exported.job.get("seed")}
    unset: dict[str, Any] = {key: carried.get(key) for key in (*OPTION_FLAGS, "seed") if getattr(request, key) is None}
    # the rest (lora_rank, an RFT job's samples_per_prompt, …) as -H would set them, where this backend takes them
    own = {key: value for key, value in carried.items() if key not in (*OPTION_FLAGS, "seed") and value is not None}
    metadata = dict(request.metadata)
    metadata.setdefault("ftcli_retrain_of", str(exported.job["id"])[:512])
    validation = request.validation_file
    if validation is None and exported.validation_file is not None:
        validation = str(exported.validation_file)
    method = request.method or exported.method
    merged = replace(
        request,
        training_file=request.training_file or str(exported.training_file),
        validation_file=validation,
        method=method,
        grader=request.grader if request.grader is not None or method != "reinforcement" else exported.grader,
        suffix=request.suffix or exported.job.get("user_provided_suffix"),
        metadata=metadata,
        extra_hyperparameters={**own, **request.extra_hyperparameters},
        **unset,
    )
    return merged, exported


def _local_file(value: str) -> Path | None:
    """The local file `value` names, or None where it is an uploaded file's id."""
    path = Path(value)
    if path.exists():
        return path
    if value.startswith("file-") or "/" not in value and not value.endswith(".jsonl"):
        return None
    raise UsageError(f"{value}: no such file")


def _uploaded_content(backend: Backend, file_id: str) -> bytes:
    """An uploaded training file's bytes, to tell its method by; where the backend won't give them back (OpenAI
    keeps fine-tuning files to itself), a refusal naming --method rather than a guess."""
    try:
        return backend.file_content(file_id)
    except (AuthError, RateLimited, BackendError):
        raise
    except FtcliError as error:
        raise UsageError(
            f"can't tell which method {file_id} is for: the backend did not give its content back ({error})",
            hint="pass --method sft or --method dpo",
        ) from None


def _method_of(path: Path) -> str | None:
    """The method the file's records are for, as `check` tells it (None where it can't be read: `check` then says
    why)."""
    from ftcli.data.check.engine import file_method

    try:
        return file_method(path) if path.is_file() else None
    except OSError:
        return None


def _upload(
    backend: Backend,
    value: str,
    path: Path | None,
    report: Report | None,
    ledger: Ledger | None,
    progress: UploadProgress | None,
) -> TrainingFile:
    """A file id is used as is; a local (checked) file is uploaded, identical bytes reused."""
    if path is None:
        return TrainingFile(value)
    with (progress or _no_progress)(path) as on_progress:
        result = backend.upload(path, ledger=ledger, on_progress=on_progress)
    return TrainingFile(result.file.id, path=value, sha256=result.sha256, report=report)


def _no_progress(_path: Path) -> AbstractContextManager[ProgressCallback | None]:
    return nullcontext(None)
