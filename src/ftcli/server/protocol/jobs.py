"""Fine-tuning jobs, their events and checkpoints."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ftcli.server.protocol.common import ModelId, Request, Response

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]


class JobError(Response):
    code: str
    message: str
    param: str | None = None


class JobParent(Response):
    """ftcli's own field of a job (OpenAI's job object has none; its SDK keeps fields it doesn't know): the
    fine-tuned model or checkpoint of this server that the job continues, and the base model under them."""

    job_id: str  # the job that made the model or checkpoint
    model: str  # its name, as the new job's `model` gave it (an `ft:` model, or a checkpoint's `:ckpt-step-N`)
    checkpoint: str | None = None  # the checkpoint's id, where the job starts from one
    base: str  # the base model the adapter was trained on (the new job's too)


class FineTuningJob(Response):
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"parent"})

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    model: str
    training_file: str
    validation_file: str | None = None
    status: JobStatus
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    error: JobError | None = None
    # what the job asked for, then (once it succeeded) what it trained with: OpenAI's three here, every setting of
    # the method's schema (protocol/hyperparameters.py) in `method`; plain dicts, as older jobs stored them
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    method: dict[str, Any]
    organization_id: str = "local"
    result_files: list[str] = Field(default_factory=list)
    seed: int = 0
    trained_tokens: int | None = None
    metadata: dict[str, str] | None = None
    estimated_finish: int | None = None
    user_provided_suffix: str | None = None
    integrations: list[Any] = Field(default_factory=list)
    parent: JobParent | None = None  # ftcli's own: what a continued job starts from (left out for the others)

    @property
    def base(self) -> str:
        """The base model the job trains an adapter of: its `model`, or where it continues a fine-tuned model,
        that model's base."""
        return self.parent.base if self.parent is not None else self.model


class JobEvent(Response):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] = Field(default_factory=dict)


class CheckpointMetrics(Response):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    # a reinforcement job's: the mean reward of the step's sampled answers, and its spread (standard deviation)
    train_reward_mean: float | None = None
    train_reward_std: float | None = None
    valid_reward_mean: float | None = None
    valid_reward_std: float | None = None
    omitted_when_none: ClassVar[frozenset[str]] = frozenset(
        {"train_reward_mean", "train_reward_std", "valid_reward_mean", "valid_reward_std"}
    )


class Checkpoint(Response):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics

    @classmethod
    def of(cls, row: dict[str, Any]) -> Checkpoint:
        """From the store's checkpoint row (its metrics decoded; the model is the checkpoint's)."""
        metrics = CheckpointMetrics.from_row(row["metrics"])
        return cls.from_row(
            row, fine_tuned_model_checkpoint=row["model"], fine_tuning_job_id=row["job_id"], metrics=metrics
        )


class CreateJob(Request):
    """Lenient as OpenAI about fields it doesn't know. `method` and the deprecated top-level `hyperparameters` are
    judged by the router against the method's schema (protocol/hyperparameters.py): OpenAI's bounds for OpenAI's
    own fields, ftcli serve's for the rest, unknown keys refused."""

    model: ModelId
    training_file: ModelId  # an id: printable, bounded (the store looks it up)
    validation_file: ModelId | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=2_147_483_647)  # OpenAI's bounds (torch takes 64 bits)
    metadata: dict[str, str] | None = None
