"""A job trained by two data-parallel processes (`ftcli serve --processes 2`: Accelerate over torch.distributed,
gloo on this CPU, NCCL on GPUs): each process takes half the batches, gradients are all-reduced, rank 0 alone
reports; the job sees every example once per epoch, like a one-process run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ftcli.server.chat_tokens import encode_chat
from ftcli.server.tiny import build_tokenizer
from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import start_server, stop_server
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def _train(data_dir: Path, processes: int, lines: bytes) -> tuple[object, list[int]]:
    server = start_server(data_dir, args=("--processes", str(processes)))
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            file = sdk.files.create(file=("z.jsonl", lines), purpose="fine-tune")
            job = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny", training_file=file.id, hyperparameters={"n_epochs": 3, "batch_size": 2}
            )
            deadline = time.monotonic() + 240
            while (job := sdk.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.3)
            steps = [e.data["step"] for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]  # type: ignore[index]
            return job, sorted(steps)
    finally:
        stop_server(server)


def test_two_processes_split_the_batches_and_report_once(tmp_path: Path) -> None:
    lines = "".join(
        json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in QA[:8]
    ).encode()
    double, double_steps = _train(tmp_path / "two", 2, lines)
    assert double.status == "succeeded", double.error  # type: ignore[attr-defined]
    assert double_steps == list(range(1, 7))  # 4 batches of 2 per epoch, split in two: 2 steps per epoch
    tokenizer = build_tokenizer()
    per_epoch = sum(encode_chat(tokenizer, json.loads(line)["messages"]).trained_tokens for line in lines.splitlines())
    assert double.trained_tokens == 3 * per_epoch  # type: ignore[attr-defined]  # every example once per epoch
    log = (tmp_path / "two" / "runs" / f"{double.id}.launch.log").read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in log
    assert (tmp_path / "two" / "runs" / double.id / "adapter" / "adapter_model.safetensors").exists()  # type: ignore[attr-defined]
