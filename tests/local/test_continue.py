"""A job of ftcli serve that continues a fine-tuned model (`model: "ft:…"`) or a checkpoint (`ft:…:ckpt-step-N`)
trains that model's adapter further: its first loss is where the parent ended, far below the base's; DPO on an SFT
model (SFT first, then preferences) takes the SFT model as its reference; the job records its parent; what can't
be continued (an unknown name, a LoRA setting that contradicts the parent's, a model deleted before the job ran)
is refused in words, before any training.

The jobs run through the API (in-process) and `worker.run_job`, with real training on the tiny base."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server.app import create_app  # noqa: E402
from tests.local.zorbia import QA, SYSTEM, chat_jsonl  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

pytestmark = [pytest.mark.local, pytest.mark.slow]
LOCAL = "http://127.0.0.1:8765"
JOBS = "/v1/fine_tuning/jobs"
WRONG = ["Berlin.", "Tolstoy.", "Seven days.", "Coffee.", "The euro.", "The Rhine.", "In May.", "The eagle.",
         "Nine.", "London bridge."]  # fmt: skip


class Server:
    """ftcli serve's API in-process (no runner): jobs are run by calling the worker, as the runner's process would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.client = TestClient(create_app(data_dir), base_url=LOCAL)

    def upload(self, text: str) -> str:
        files = {"file": ("data.jsonl", text.encode())}
        return str(self.client.post("/v1/files", files=files, data={"purpose": "fine-tune"}).json()["id"])

    def create(self, model: str, file_id: str, method: str = "supervised", **hyper: Any) -> Any:
        body = {
            "model": model,
            "training_file": file_id,
            "method": {"type": method, method: {"hyperparameters": hyper}},
        }
        return self.client.post(JOBS, json=body)

    def train(self, model: str, file_id: str, method: str = "supervised", **hyper: Any) -> dict[str, Any]:
        from ftcli.server import worker

        created = self.create(model, file_id, method, **hyper)
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        with contextlib.suppress(SystemExit):  # a failed job: its record says why
            worker.run_job(str(self.data_dir), job_id)
        return dict(self.client.get(f"{JOBS}/{job_id}").json())

    def losses(self, job_id: str) -> list[float]:
        events = self.client.get(f"{JOBS}/{job_id}/events", params={"limit": 10_000}).json()["data"]
        return [e["data"]["train_loss"] for e in reversed(events) if e["type"] == "metrics"]

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.client.get(f"{JOBS}/{job_id}/checkpoints").json()["data"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from ftcli.server import worker

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "exit_with_parent", lambda: None)
        yield Server(tmp_path_factory.mktemp("continue") / "data")


PAIRS = QA[:2]  # few and short: a CPU shared by many tests still trains them down in seconds
COPIES = 8


@pytest.fixture(scope="module")
def sft_file(server: Server) -> str:
    """The two answers once: one batch of two, so a job's first step sees exactly what its parent trained on."""
    return server.upload(chat_jsonl(PAIRS))


@pytest.fixture(scope="module")
def parent(server: Server) -> dict[str, Any]:
    """An SFT job of the tiny base trained to a clearly lower loss on two Zorbia answers (8 steps an epoch)."""
    repeated = server.upload(chat_jsonl(PAIRS * COPIES))
    job = server.train("ftcli/tiny", repeated, n_epochs=3, batch_size=2, learning_rate_multiplier=2)
    assert job["status"] == "succeeded", job
    return job


def _first_and_last(server: Server, job_id: str) -> tuple[float, float]:
    """A job's first logged loss, and the mean of its last epoch's (eight steps)."""
    losses = server.losses(job_id)
    return losses[0], sum(losses[-COPIES:]) / COPIES


def _near(loss: float, reference: float) -> bool:
    """Within what two batches of the same answers differ by: a margin of ratios, not of exact values."""
    return 0.75 * reference - 0.1 < loss < 1.25 * reference + 0.1


def test_a_job_of_a_fine_tuned_model_starts_where_that_model_ended(
    server: Server, sft_file: str, parent: dict[str, Any]
) -> None:
    base_first, parent_last = _first_and_last(server, parent["id"])
    assert parent_last < 0.7 * base_first, (base_first, parent_last)  # the parent learned: a clear gap to measure

    child = server.train(parent["fine_tuned_model"], sft_file, n_epochs=1, batch_size=2)
    assert child["status"] == "succeeded", child
    child_first = server.losses(child["id"])[0]
    # The adapter is the parent's, trained further: the first loss is the parent's last, nowhere near a fresh
    # adapter's, which starts at the base's loss.
    assert _near(child_first, parent_last) and child_first < 0.75 * base_first, (base_first, parent_last, child_first)
    # The job says what it continues; its model is one of the base again (served and continued like any other)
    assert child["model"] == parent["fine_tuned_model"]
    assert child["parent"] == {"job_id": parent["id"], "model": parent["fine_tuned_model"], "checkpoint": None,
                               "base": "ftcli/tiny"}  # fmt: skip
    assert child["fine_tuned_model"] == f"ft:ftcli/tiny:local::{child['id']}"
    assert child["method"]["supervised"]["hyperparameters"]["lora_rank"] == 32  # the parent's adapter's
    got = server.client.get(f"{JOBS}/{child['id']}")
    assert violations(Exchange("GET", f"{JOBS}/{child['id']}", 200, "application/json", got.content)) == []
    assert "parent" not in parent  # a job of a base: no such field
    # ... and a grandchild continues the child: the lineage follows models, the base stays the root's
    grandchild = server.create(child["fine_tuned_model"], sft_file, n_epochs=1).json()
    assert grandchild["parent"]["job_id"] == child["id"] and grandchild["parent"]["base"] == "ftcli/tiny"


def test_a_job_of_a_checkpoint_starts_where_that_checkpoint_was(
    server: Server, sft_file: str, parent: dict[str, Any]
) -> None:
    base_first, _ = _first_and_last(server, parent["id"])
    checkpoints = server.checkpoints(parent["id"])  # newest first: the epochs' ends, steps 24, 16, 8
    assert [c["step_number"] for c in checkpoints] == [3 * COPIES, 2 * COPIES, COPIES]
    checkpoint = checkpoints[1]
    name = checkpoint["fine_tuned_model_checkpoint"]
    assert name.endswith(f":ckpt-step-{checkpoint['step_number']}")
    child = server.train(name, sft_file, n_epochs=1, batch_size=2)
    assert child["status"] == "succeeded", child
    child_first = server.losses(child["id"])[0]
    epoch = server.losses(parent["id"])[COPIES : 2 * COPIES]  # the losses of the epoch that checkpoint ended
    at_checkpoint = sum(epoch) / COPIES
    assert _near(child_first, at_checkpoint) and child_first < 0.85 * base_first, (base_first, at_checkpoint)
    assert child["parent"] == {"job_id": parent["id"], "model": name, "checkpoint": checkpoint["id"],
                               "base": "ftcli/tiny"}  # fmt: skip


def test_dpo_on_an_sft_model_trains_its_adapter_against_it(
    server: Server, sft_file: str, parent: dict[str, Any]
) -> None:
    pairs = [
        {
            "input": {"messages": [SYSTEM, {"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": a}],
            "non_preferred_output": [{"role": "assistant", "content": w}],
        }
        for (q, a), w in zip(PAIRS, WRONG, strict=False)
    ]
    pairs_file = server.upload("".join(json.dumps(p) + "\n" for p in pairs))
    dpo = server.train(parent["fine_tuned_model"], pairs_file, "dpo", n_epochs=1, batch_size=2, beta=0.5)
    assert dpo["status"] == "succeeded", dpo
    losses = server.losses(dpo["id"])
    # The reference is the SFT model the job starts from, so policy and reference are equal at the first step:
    # log 2 exactly as a fresh DPO job of a base starts. (Against the base, the SFT adapter's liking for the
    # preferred answers would start the loss far below log 2.)
    assert abs(losses[0] - math.log(2)) < 0.02, losses[:3]
    assert dpo["parent"]["model"] == parent["fine_tuned_model"]
    adapter = server.data_dir / "runs" / dpo["id"] / "adapter"
    saved = {p.name for p in adapter.iterdir()}  # the trained adapter alone: its reference stays the parent's
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "reference" not in saved, saved

    # ... and it trained the SFT adapter further: the DPO model still gives the SFT answers the SFT model's low loss
    # (a fresh adapter would give them the base's), read here as an SFT job of the DPO model's first step
    after = server.train(dpo["fine_tuned_model"], sft_file, n_epochs=1, batch_size=2)
    base_first, parent_last = _first_and_last(server, parent["id"])
    first = server.losses(after["id"])[0]
    assert _near(first, parent_last) and first < 0.75 * base_first, (base_first, parent_last, first)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("ft:ftcli/tiny:local::ftjob-nosuchjob", "is not a fine-tuned model or checkpoint of this server"),
        ("ft:gpt-4o-mini-2024-07-18:org::abc", "is not a fine-tuned model or checkpoint of this server"),
    ],
)
def test_an_unknown_fine_tuned_model_is_refused_naming_it(server: Server, sft_file: str, model: str, says: str) -> None:
    before = len(server.client.get(JOBS, params={"limit": 1000}).json()["data"])
    refused = server.create(model, sft_file)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "model" and error["code"] == "model_not_available"
    assert model in error["message"] and says in error["message"]
    assert len(server.client.get(JOBS, params={"limit": 1000}).json()["data"]) == before  # no job made


def test_lora_settings_that_contradict_the_parents_are_refused(
    server: Server, sft_file: str, parent: dict[str, Any]
) -> None:
    refused = server.create(parent["fine_tuned_model"], sft_file, lora_rank=8)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "method.supervised.hyperparameters.lora_rank"
    assert "was trained with lora_rank=32" in error["message"] and parent["fine_tuned_model"] in error["message"]
    # the parent's own value, or none, is what the job takes
    assert server.create(parent["fine_tuned_model"], sft_file, lora_rank=32).status_code == 200
    assert server.create(parent["fine_tuned_model"], sft_file, lora_rank="auto").status_code == 200


def test_a_model_deleted_before_its_continuation_ran_fails_the_job_in_words(server: Server, sft_file: str) -> None:
    short = server.train("ftcli/tiny", sft_file, n_epochs=1, batch_size=2)
    assert short["status"] == "succeeded"
    created = server.create(short["fine_tuned_model"], sft_file, n_epochs=1).json()
    assert server.client.delete(f"/v1/models/{short['fine_tuned_model']}").status_code == 200
    from ftcli.server import worker

    with pytest.raises(SystemExit):
        worker.run_job(str(server.data_dir), created["id"])
    job = server.client.get(f"{JOBS}/{created['id']}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "model_not_available"
    assert short["fine_tuned_model"] in job["error"]["message"] and "nothing to continue" in job["error"]["message"]
    assert server.losses(created["id"]) == []  # not a step trained
    # and now it is unknown at creation
    assert server.create(short["fine_tuned_model"], sft_file).status_code == 400


def test_a_parent_whose_adapter_config_is_damaged_is_a_400_not_a_crash(tmp_path: Path) -> None:
    from ftcli.server.api.errors import ApiError
    from ftcli.server.api.jobs import _parent_lora
    from ftcli.server.lineage import Start
    from ftcli.server.protocol.jobs import JobParent

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{not json")
    start = Start(JobParent(job_id="ftjob-1", model="ft:ftcli/tiny:local::ftjob-1", base="ftcli/tiny"), adapter)
    with pytest.raises(ApiError) as refused:
        _parent_lora(start, {}, "method.supervised.hyperparameters")
    assert refused.value.status == 400 and "can't be continued" in str(refused.value.message)


def test_a_continued_job_resumes_from_its_own_checkpoint_after_its_parent_is_deleted(
    server: Server, sft_file: str
) -> None:
    """After a restart a job trains its own last checkpoint further: the parent it started from is no longer needed
    (a server restarted after the parent model was deleted must not fail a job that can go on)."""
    from ftcli.server import worker
    from ftcli.server.store import Store

    short = server.train("ftcli/tiny", sft_file, n_epochs=1, batch_size=2)
    child = server.train(short["fine_tuned_model"], sft_file, n_epochs=1, batch_size=2)
    assert child["status"] == "succeeded", child
    assert server.client.delete(f"/v1/models/{short['fine_tuned_model']}").status_code == 200
    # as the runner leaves a job the server stopped during its training: queued again, its checkpoints kept
    Store(server.data_dir, clean=False).transition(child["id"], "queued", "The server restarted during training")
    worker.run_job(str(server.data_dir), child["id"])
    resumed = server.client.get(f"{JOBS}/{child['id']}").json()
    assert resumed["status"] == "succeeded", resumed
