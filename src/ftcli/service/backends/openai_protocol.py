"""OpenAI's fine-tuning protocol (`/fine_tuning/jobs`, `/files`, `/uploads`) through the `openai` SDK: OpenAI, Azure
OpenAI, `ftcli serve` and any compatible server. The operations themselves live in service/jobs.py and
service/files.py; this binds them to one client."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ftcli.service import files, jobs
from ftcli.service.backends.base import PriceEstimate, ProgressCallback

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.service.ledger import Ledger


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

    def price_estimate(self, request: jobs.JobRequest) -> PriceEstimate | None:  # noqa: ARG002 (the interface)
        return None  # OpenAI quotes no price through its API: `check` estimates from the catalog

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
