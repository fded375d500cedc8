"""OpenAI's fine-tuning protocol (`/fine_tuning/jobs`, `/files`, `/uploads`) through the `openai` SDK: OpenAI, Azure
OpenAI, `ftcli serve` and any compatible server. The operations themselves live in service/jobs.py and
service/files.py; this binds them to one client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ftcli.service import files, jobs
from ftcli.service.backends.base import PriceEstimate, WeightsFormat
from ftcli.service.errors import UsageError, translated

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.data.training_content import TrainingContent
    from ftcli.service.files import ProgressCallback
    from ftcli.service.ledger import Ledger
    from ftcli.service.models import ModelView


class OpenAIBackend:
    default_epochs: int | None = None  # OpenAI's rule, by the number of examples (data/estimate.py)

    def __init__(self, client: OpenAI, *, kind: str = "openai") -> None:
        self.client = client
        self.kind = kind

    def chat_client(self) -> OpenAI:
        return self.client

    def upload(
        self,
        path: Path,
        *,
        ledger: Ledger | None = None,
        force: bool = False,
        multipart: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> files.UploadResult:
        return files.upload_file(
            self.client, path, ledger=ledger, force=force, multipart=multipart, on_progress=on_progress
        )

    def create_job(self, request: jobs.JobRequest) -> FineTuningJob:
        return jobs.create_job(self.client, request)

    def start_from(self, request: jobs.JobRequest) -> jobs.JobRequest:
        """OpenAI's protocol trains further from a fine-tuned model or a checkpoint named as the job's `model`
        (`ft:…`, a checkpoint's `ft:…:ckpt-step-N`; ftcli serve alike): `--from-checkpoint` becomes the model. Its
        base must be `--model`'s, where both are given; which names exist is the backend's to say (a 400 naming
        the model)."""
        checkpoint = request.from_checkpoint
        if checkpoint is None:
            return request
        if not checkpoint.startswith("ft:"):
            raise UsageError(
                f"{checkpoint!r}: this backend names a checkpoint by its model (ft:…:ckpt-step-N)",
                hint="`ftcli status JOB --checkpoints` lists a job's checkpoints by that name",
            )
        if request.model and request.model != checkpoint and _base(request.model) != _base(checkpoint):
            raise UsageError(
                f"the checkpoint {checkpoint} is of {_base(checkpoint)}, not of {_base(request.model)}",
                hint="leave --model out: the checkpoint names its base",
            )
        return replace(request, model=checkpoint, from_checkpoint=None)

    def fit_request(self, request: jobs.JobRequest, content: TrainingContent | None) -> jobs.JobRequest:
        """Sent as it is: an `ftcli serve` refuses what it can't train itself when it validates the files
        (data/local_training.py), and for OpenAI's models `check` warns of reasoning its format has no field for
        (FT320)."""
        del content
        return request

    def price_estimate(self, request: jobs.JobRequest) -> PriceEstimate | None:  # noqa: ARG002 (the interface)
        return None  # OpenAI quotes no price through its API: `check` estimates from the catalog

    def trainable_models(self) -> list[str]:
        """OpenAI's and Azure's: the catalog's (the API doesn't say which models take fine-tuning); another server's
        (`ftcli serve`): the models it lists that are not fine-tuned ones."""
        if self.kind in ("openai", "azure"):
            from ftcli.data.catalog import load_catalog

            return sorted(load_catalog().models)
        from ftcli.service.models import list_models

        return [model.id for model in list_models(self.client) if not model.fine_tuned]

    def list_models(self, *, fine_tuned_only: bool = False) -> list[ModelView]:
        from ftcli.service.models import list_models

        return list_models(self.client, fine_tuned_only=fine_tuned_only)

    def list_jobs(self, *, limit: int = 20) -> list[FineTuningJob]:
        return jobs.list_jobs(self.client, limit=limit)

    def get_job(self, job_id: str) -> FineTuningJob:
        return jobs.get_job(self.client, job_id)

    def list_events(self, job_id: str, *, limit: int = 100) -> list[FineTuningJobEvent]:
        return jobs.list_events(self.client, job_id, limit=limit)

    def list_checkpoints(self, job_id: str, *, limit: int = 20) -> list[FineTuningJobCheckpoint]:
        return jobs.list_checkpoints(self.client, job_id, limit=limit)

    def cancel_job(self, job_id: str) -> FineTuningJob:
        return jobs.cancel_job(self.client, job_id)

    def pause_job(self, job_id: str) -> FineTuningJob:
        return jobs.pause_job(self.client, job_id)

    def resume_job(self, job_id: str) -> FineTuningJob:
        return jobs.resume_job(self.client, job_id)

    def iter_jobs(self, job_ids: list[str] | None = None) -> Iterator[FineTuningJob]:
        if job_ids:
            for job_id in job_ids:
                yield self.get_job(job_id)
            return
        with translated():
            yield from self.client.fine_tuning.jobs.list(limit=100)  # the SDK pages through them all

    def all_events(self, job_id: str) -> list[FineTuningJobEvent]:
        with translated():
            events = list(self.client.fine_tuning.jobs.list_events(job_id, limit=100))
        events.reverse()  # oldest first
        return events

    def file_name(self, file_id: str) -> str:
        with translated():
            return str(self.client.files.retrieve(file_id).filename or "")

    def file_content(self, file_id: str) -> bytes:
        with translated():
            return bytes(self.client.files.content(file_id).read())

    def check_weights(self, fmt: WeightsFormat) -> NoReturn:
        if self.kind == "compatible":
            hint = "for a model of `ftcli serve`: ftcli models export MODEL --out DIR"
        else:
            hint = "export its data and re-train elsewhere: ftcli train --from-export OUT/<job-id> --backend local"
        raise UsageError(f"{self.kind} does not let a fine-tuned model's weights ({fmt}) leave it", hint=hint)

    def download_weights(
        self,
        job_id: str,
        fmt: WeightsFormat,
        partial: Path,
        *,
        on_progress: ProgressCallback | None = None,
        max_bytes: int | None = None,
    ) -> str:
        del job_id, partial, on_progress, max_bytes  # nothing is downloaded from these backends
        self.check_weights(fmt)


def _base(model: str) -> str:
    """The base model under a model's name (an `ft:` name's, an alias's canonical name)."""
    from ftcli.data.catalog import base_model
    from ftcli.data.local_bases import canonical_name

    return canonical_name(base_model(model))
