"""A job's life in the store (issue 24): a change of status and the event that tells it are written together and
answered as the protocol's job; every failure (a bad file, a crashed process, a failed training) is one `fail_job`;
training reports through one reporter that the worker writes to the job."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pydantic", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.server.protocol.jobs import FineTuningJob  # noqa: E402
from ftcli.server.reporting import StepMetrics  # noqa: E402
from ftcli.server.store import Store  # noqa: E402

pytestmark = [pytest.mark.local]
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "data")
    store.save_job(
        FineTuningJob(
            id="ftjob-1", created_at=0, model="ftcli/tiny", training_file="file-1", status="running", method=METHOD
        ).model_dump(mode="json")
    )
    store.update_job("ftjob-1", estimated_finish=123)
    return store


def test_a_transition_writes_the_status_with_its_event_and_answers_the_typed_job(store: Store) -> None:
    job = store.transition("ftjob-1", "paused", "Fine-tuning job paused", estimated_finish=None)
    assert isinstance(job, FineTuningJob) and job.status == "paused" and job.estimated_finish is None
    assert store.job("ftjob-1") == job.model_dump(mode="json")
    (event,) = store.events("ftjob-1")
    assert (event["message"], event["level"], event["type"]) == ("Fine-tuning job paused", "info", "message")


def test_a_failed_job_has_its_error_its_finish_and_an_error_event_and_no_estimate(store: Store) -> None:
    job = store.fail_job("ftjob-1", "out_of_memory", "ran out of memory", param="hyperparameters")
    assert job.status == "failed" and job.finished_at is not None and job.estimated_finish is None
    assert job.error is not None and (job.error.code, job.error.message, job.error.param) == (
        "out_of_memory", "ran out of memory", "hyperparameters",
    )  # fmt: skip
    assert [(e["message"], e["level"]) for e in store.events("ftjob-1")] == [("ran out of memory", "error")]


def test_a_transition_that_cannot_be_written_leaves_neither_status_nor_event(store: Store) -> None:
    with pytest.raises(TypeError):  # a change that isn't JSON: the transaction rolls back, the event with it
        store.transition("ftjob-1", "succeeded", "The job has successfully completed", fine_tuned_model=object())
    assert store.job("ftjob-1")["status"] == "running"  # type: ignore[index]
    assert store.events("ftjob-1") == []


def test_the_workers_reporter_writes_steps_validation_and_checkpoints_to_the_job(store: Store, tmp_path: Path) -> None:
    from ftcli.server.worker import JobReporter

    job = FineTuningJob.model_validate(store.job("ftjob-1"))
    reporter = JobReporter(store, job)
    reporter.step(StepMetrics(step=1, total_steps=4, epoch=1, train_loss=2.0, train_mean_token_accuracy=0.5))
    last = StepMetrics(step=2, total_steps=4, epoch=1, train_loss=1.5, train_mean_token_accuracy=0.6)
    reporter.step(last)
    reporter.epoch_end(last)  # no validation loss: nothing more to tell
    validated = StepMetrics(2, 4, 1, 1.5, 0.6, valid_loss=1.75)
    reporter.epoch_end(validated)
    reporter.checkpoint_saved(1, tmp_path / "checkpoint-epoch-1", validated)
    reporter.warning("3 of 6 training examples were truncated")
    assert not reporter.should_stop()

    events = list(reversed(store.events("ftjob-1")))  # oldest first
    assert [e["data"].get("step") for e in events if e["type"] == "metrics"] == [1, 2, 2]
    assert events[2]["data"]["valid_loss"] == 1.75 and "valid_loss" not in events[1]["data"]
    assert [e["message"] for e in events[3:]] == [
        "Checkpoint created at step 2", "3 of 6 training examples were truncated",
    ]  # fmt: skip
    assert events[-1]["level"] == "warn"
    (checkpoint,) = store.checkpoints("ftjob-1")
    assert checkpoint["step_number"] == 2 and checkpoint["metrics"]["epoch"] == 1
    assert checkpoint["model"].endswith(":ckpt-step-2") and checkpoint["path"] == str(tmp_path / "checkpoint-epoch-1")
    assert store.job("ftjob-1")["estimated_finish"] is not None  # type: ignore[index]
