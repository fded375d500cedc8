"""A job trained by two data-parallel processes (`ftcli serve --processes 2`: Accelerate over torch.distributed,
gloo on this CPU, NCCL on GPUs): each process takes half the batches, gradients are all-reduced, rank 0 alone
reports; the job sees every example once per epoch, like a one-process run."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ftcli.data.chat_template import encode_chat
from ftcli.data.local_bases import build_tiny_tokenizer
from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import start_server, stop_server
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


@dataclass
class Trained:
    job: Any
    steps: list[int]  # of the metrics events, ascending
    losses: list[float]  # by step
    messages: list[str]


LINES = "".join(
    json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
    for q, a in QA[:8]
).encode()


def _train(data_dir: Path, processes: int, lines: bytes, **hyperparameters: Any) -> Trained:
    server = start_server(data_dir, args=("--processes", str(processes)))
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            file = sdk.files.create(file=("z.jsonl", lines), purpose="fine-tune")
            job = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny",
                training_file=file.id,
                hyperparameters={"n_epochs": 3, "batch_size": 2, **hyperparameters},  # type: ignore[typeddict-item]
            )
            deadline = time.monotonic() + 240
            while (job := sdk.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.3)
            events = list(sdk.fine_tuning.jobs.list_events(job.id, limit=100))
            metrics = sorted((e.data["step"], e.data["train_loss"]) for e in events if e.type == "metrics")  # type: ignore[index]
            return Trained(job, [s for s, _ in metrics], [loss for _, loss in metrics], [e.message for e in events])
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trained, Path]:
    data_dir = tmp_path_factory.mktemp("two")
    return _train(data_dir, 2, LINES), data_dir


def test_two_processes_split_the_batches_and_report_once(data_parallel: tuple[Trained, Path]) -> None:
    trained, data_dir = data_parallel
    double, double_steps, lines = trained.job, trained.steps, LINES
    assert double.status == "succeeded", double.error  # type: ignore[attr-defined]
    assert double_steps == list(range(1, 7))  # 4 batches of 2 per epoch, split in two: 2 steps per epoch
    tokenizer = build_tiny_tokenizer()
    per_epoch = sum(encode_chat(tokenizer, json.loads(line)["messages"]).tokens for line in lines.splitlines())
    assert double.trained_tokens == 3 * per_epoch  # type: ignore[attr-defined]  # every example once per epoch
    log = (data_dir / "runs" / f"{double.id}.launch.log").read_text()
    assert "Traceback" not in log
    assert (data_dir / "runs" / double.id / "adapter" / "adapter_model.safetensors").exists()


def test_fsdp_shards_the_model_and_trains_as_data_parallelism_does(
    data_parallel: tuple[Trained, Path], tmp_path: Path
) -> None:
    """FSDP2 over gloo: each process holds half the weights, gathers a block's to compute it, and the job learns the
    same thing as the unsharded data-parallel run (the same batches and seed: the same losses, up to the order of
    floating-point sums)."""
    from safetensors.torch import load_file

    unsharded, unsharded_dir = data_parallel
    sharded = _train(tmp_path, 2, LINES, fsdp=True)
    assert sharded.job.status == "succeeded", sharded.job.error
    assert sharded.steps == unsharded.steps
    assert sharded.losses == pytest.approx(unsharded.losses, rel=1e-3, abs=1e-4)
    note = next(m for m in sharded.messages if m.startswith("FSDP:"))
    total, held = (int(n.replace(",", "")) for n in re.findall(r"[\d,]{4,}", note))
    assert "across 2 processes" in note and 0.4 * total < held < 0.6 * total, note
    weights = [load_file(d / "runs" / t.job.id / "adapter" / "adapter_model.safetensors")
               for d, t in ((tmp_path, sharded), (unsharded_dir, unsharded))]  # fmt: skip
    assert weights[0].keys() == weights[1].keys() and weights[0]  # the whole adapter, gathered from the shards
    for name, tensor in weights[0].items():
        assert tensor.shape == weights[1][name].shape
        assert (tensor - weights[1][name]).abs().max() < 1e-3 * max(1.0, float(weights[1][name].abs().max())), name


def test_a_second_machine_joins_a_job_with_the_command_its_event_shows(
    data_parallel: tuple[Trained, Path], tmp_path: Path
) -> None:
    """`ftcli serve --nodes 2 --rendezvous HOST:PORT`: the job waits for node 1, whose command is in its events; here
    node 1 is a second launch on this machine (sharing the data folder, as machines would over a network file
    system). Two nodes of one process train as the two-process run does."""
    unsharded, _ = data_parallel
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rendezvous = ("--nodes", "2", "--rendezvous", f"127.0.0.1:{port}", "--allow-unauthenticated-rendezvous")
    args = ("--processes", "1", *rendezvous)
    server = start_server(tmp_path, args=args)
    joined: subprocess.Popen[bytes] | None = None
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            file = sdk.files.create(file=("z.jsonl", LINES), purpose="fine-tune")
            job = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny", training_file=file.id, hyperparameters={"n_epochs": 3, "batch_size": 2}
            )
            deadline = time.monotonic() + 240
            while joined is None or (job := sdk.fine_tuning.jobs.retrieve(job.id)).status not in (
                "succeeded", "failed", "cancelled",
            ):  # fmt: skip
                assert time.monotonic() < deadline, "the job did not finish"
                if joined is None:
                    waiting = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id) if "run: " in e.message]
                    if waiting:
                        command = shlex.split(waiting[0].split("run: ", 1)[1])
                        assert command[command.index("--node_rank") + 1] == "1"
                        with (tmp_path / "node-1.log").open("wb") as log:
                            joined = subprocess.Popen(command, stdout=log, stderr=log)
                time.sleep(0.3)
            assert job.status == "succeeded", job.error
            events = list(sdk.fine_tuning.jobs.list_events(job.id, limit=100))
            losses = [e.data["train_loss"] for e in sorted(  # type: ignore[index]
                (e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])]  # type: ignore[index]  # fmt: skip
        # node 1's torchrun agent meets node 0's at the elastic exit barrier (torch waits up to 300 s there): on a busy
        # machine it was seen to take over a minute after the job had succeeded
        assert joined is not None and joined.wait(timeout=330) == 0, (tmp_path / "node-1.log").read_text()
        assert losses == pytest.approx(unsharded.losses, rel=1e-3, abs=1e-4)
    finally:
        if joined is not None and joined.poll() is None:
            joined.kill()
        stop_server(server)
