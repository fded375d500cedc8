"""Run manifests: `.ftcli/runs/<job-id>.json` in the working directory, one per job ftcli created.

They tie a job to its data (sha256, check summary), resolved parameters and estimate, and are later filled with
the trained tokens and the final model. Written atomically; never hold keys.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ftcli.data.atomic import write_atomic

RUNS_DIR = Path(".ftcli") / "runs"


class RunManifest(BaseModel):
    job_id: str
    backend: dict[str, str | None]  # Settings.describe(): no key
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    model: str
    method: str
    training_file: dict[str, Any]  # path, sha256, file_id
    validation_file: dict[str, Any] | None = None
    parameters: dict[str, Any]
    check: dict[str, Any] | None = None  # examples, errors, warnings
    estimate: dict[str, Any] | None = None  # tokens, epochs, cost
    request_tag: str | None = None
    status: str | None = None
    trained_tokens: int | None = None
    fine_tuned_model: str | None = None
    retrain_of: dict[str, Any] | None = None  # `train --from-export`: the exported job this run re-trains

    def save(self, root: Path | None = None) -> Path:
        folder = (root or Path.cwd()) / RUNS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.job_id}.json"
        write_atomic(target, (self.model_dump_json(indent=2) + "\n").encode("utf-8"), private=True)
        return target

    @classmethod
    def load(cls, job_id: str, root: Path | None = None) -> RunManifest | None:
        path = (root or Path.cwd()) / RUNS_DIR / f"{job_id}.json"
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def update_from_job(self, status: str, trained_tokens: int | None, fine_tuned_model: str | None) -> None:
        self.status = status
        self.trained_tokens = trained_tokens if trained_tokens is not None else self.trained_tokens
        self.fine_tuned_model = fine_tuned_model or self.fine_tuned_model


def record_job_state(job: Any, root: Path | None = None) -> None:
    """A followed job's end (status, trained tokens, model) written into its run manifest, if it has one."""
    manifest = RunManifest.load(job.id, root)
    if manifest is not None:
        manifest.update_from_job(str(job.status), job.trained_tokens, job.fine_tuned_model)
        manifest.save(root)


def estimated_tokens(job_id: str, root: Path | None = None) -> int | None:
    """The billed tokens `check` estimated when the job was started from here (its manifest), for comparison."""
    manifest = RunManifest.load(job_id, root)
    estimate = manifest.estimate if manifest else None
    value = estimate.get("billed_tokens") if estimate else None
    return int(value) if isinstance(value, int) else None
