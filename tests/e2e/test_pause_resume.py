"""Pause, then resume (issue 22): a resumed job continues from its last checkpoint — its step count goes on from the
checkpoint's step and its loss from where training had brought it — instead of training again from the start."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server
from tests.local.zorbia import QA, chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]
EPOCHS, BATCH = 6, 4
EXAMPLES = QA * 3


def _wait(what: str, ready: Any, timeout: float = 1800) -> Any:
    """Polls until `ready()` gives something; generous, as a busy machine may take minutes to start a job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_resumed_job_continues_from_its_checkpoint(server: Server) -> None:
    with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
        data = sdk.files.create(file=("pause.jsonl", chat_jsonl(EXAMPLES).encode()), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny", training_file=data.id, hyperparameters={"n_epochs": EPOCHS, "batch_size": BATCH}
        )

        # paused as soon as the first epoch's checkpoint is there, while later epochs are still to come
        def checkpointed() -> Any:
            status = sdk.fine_tuning.jobs.retrieve(job.id).status
            assert status in ("validating_files", "queued", "running"), f"the job ended ({status}) before a pause"
            return sdk.fine_tuning.jobs.checkpoints.list(job.id).data

        _wait("a checkpoint", checkpointed)
        paused = sdk.fine_tuning.jobs.pause(job.id)
        assert paused.status == "paused"
        checkpoint = sdk.fine_tuning.jobs.checkpoints.list(job.id).data[0]  # the newest
        resumed = sdk.fine_tuning.jobs.resume(job.id)
        assert resumed.status == "queued"
        final = _wait(
            "the resumed job to finish",
            lambda: (j := sdk.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
        )
        events = list(reversed(sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data))  # oldest first

    assert final.status == "succeeded", final.error
    steps_per_epoch = -(-len(EXAMPLES) // BATCH)
    epoch = checkpoint.step_number // steps_per_epoch
    assert 1 <= epoch < EPOCHS and checkpoint.step_number == epoch * steps_per_epoch
    messages = [e.message for e in events]
    resuming = messages.index(f"Resuming from epoch {epoch}")
    assert messages.index("Fine-tuning job paused") < messages.index("Fine-tuning job resumed") < resuming

    def metrics(part: list[Any]) -> list[dict[str, Any]]:
        return [dict(e.data) for e in part if e.type == "metrics" and e.data and "train_loss" in e.data]

    before, after = metrics(events[:resuming]), metrics(events[resuming:])
    # the step count goes on from the checkpoint's step, to the end, each step once
    assert [m["step"] for m in after] == list(range(checkpoint.step_number + 1, EPOCHS * steps_per_epoch + 1))
    assert before[0]["step"] == 1 and all(m["total_steps"] == EPOCHS * steps_per_epoch for m in before + after)
    # and the loss from where the checkpoint left it: the resumed epoch trains below the job's first epoch (a restart
    # from the base would replay that first epoch: the same batches from the same seed, the same losses)
    first_epoch = [m["train_loss"] for m in before if m["step"] <= steps_per_epoch]
    resumed_epoch = [m["train_loss"] for m in after[:steps_per_epoch]]
    assert len(first_epoch) == len(resumed_epoch) == steps_per_epoch
    mean_first, mean_resumed = sum(first_epoch) / steps_per_epoch, sum(resumed_epoch) / steps_per_epoch
    assert mean_resumed < mean_first - 0.05, (first_epoch, resumed_epoch)
