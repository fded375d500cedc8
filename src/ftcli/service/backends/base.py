"""What every backend does for ftcli's verbs. Jobs, events, checkpoints and files come back as the `openai` SDK's
own types whatever the backend, so the views and `--json` documents are the same everywhere; a backend's own
status (Together's `pending`, `completed`, …) is kept beside OpenAI's in `backend_status`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.data.training_content import TrainingContent
    from ftcli.service.files import ProgressCallback, UploadResult
    from ftcli.service.jobs import JobRequest
    from ftcli.service.ledger import Ledger
    from ftcli.service.models import ModelView

WeightsFormat = Literal["adapter", "merged"]


@dataclass(frozen=True, slots=True)
class PriceEstimate:
    """A backend's own quote for a job (Together's `/fine-tunes/estimate-price`), shown before it starts."""

    total_usd: float
    trained_tokens: int | None = None
    allowed: bool = True  # the account can afford it
    details: dict[str, Any] | None = None


class Backend(Protocol):
    kind: str  # "openai", "azure", "compatible" or "together"
    default_epochs: int | None  # a job's epochs when none are asked for; None: OpenAI's rule by the data's size

    def chat_client(self) -> OpenAI:
        """An `openai` client for chat completions with this backend's models."""
        ...

    def upload(
        self,
        path: Path,
        *,
        ledger: Ledger | None = None,
        force: bool = False,
        multipart: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadResult: ...

    def create_job(self, request: JobRequest) -> FineTuningJob:
        """Create the job exactly once, through timeouts and retries."""
        ...

    def start_from(self, request: JobRequest) -> JobRequest:
        """Before anything is sent: a job that continues a fine-tuned model or a checkpoint
        (`train --model ft:…`, `--from-checkpoint`) as this backend asks for one (OpenAI's protocol: the model's or
        checkpoint's name as the job's model; Together: its base as the model, the name as `from_checkpoint`).
        Refused (UsageError, naming it) where the checkpoint is unknown or of another base than `--model`."""
        ...

    def fit_request(self, request: JobRequest, content: TrainingContent | None) -> JobRequest:
        """Before anything is sent: refuse (UsageError, naming why) training data this backend would not train as
        written, or the request with the settings the data needs (Together's vision option for images). `content`:
        what the training file holds; None for an uploaded file's id nobody has read yet."""
        ...

    def price_estimate(self, request: JobRequest) -> PriceEstimate | None:
        """The backend's own price for the job, where it quotes one."""
        ...

    def trainable_models(self) -> list[str]:
        """The base models this backend can fine-tune."""
        ...

    def list_models(self, *, fine_tuned_only: bool = False) -> list[ModelView]:
        """The models this backend serves (`ftcli models`), with their base model and shutdown date."""
        ...

    def list_jobs(self, *, limit: int = 20) -> list[FineTuningJob]: ...

    def get_job(self, job_id: str) -> FineTuningJob: ...

    def list_events(self, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]:
        """Oldest first."""
        ...

    def list_checkpoints(self, job_id: str, *, limit: int = 20) -> list[FineTuningJobCheckpoint]: ...

    def cancel_job(self, job_id: str) -> FineTuningJob: ...

    def pause_job(self, job_id: str) -> FineTuningJob: ...

    def resume_job(self, job_id: str) -> FineTuningJob: ...

    # -- leaving the backend (`ftcli export`) ----------------------------------------------------------------

    def iter_jobs(self, job_ids: list[str] | None = None) -> Iterator[FineTuningJob]:
        """Every job (all pages), or the named ones."""
        ...

    def all_events(self, job_id: str) -> list[FineTuningJobEvent]:
        """Every event of a job (all pages), oldest first."""
        ...

    def file_name(self, file_id: str) -> str: ...

    def file_content(self, file_id: str) -> bytes: ...

    def check_weights(self, fmt: WeightsFormat) -> None:
        """Refuse (UsageError) up front where this backend never gives out a model's weights."""
        ...

    def download_weights(
        self,
        job_id: str,
        fmt: WeightsFormat,
        partial: Path,
        *,
        on_progress: ProgressCallback | None = None,
        max_bytes: int | None = None,
    ) -> str:
        """Stream a fine-tuned model's weights into `partial`, continuing from the bytes already there when the
        backend can; returns the file's name. Refused (and `partial` removed) as soon as the file would pass
        `max_bytes` or the free space. Backends that keep weights to themselves refuse (UsageError)."""
        ...
