"""Training that fits real models (issue 14), tested on a CPU: the machine-dependent decisions (precision, gradient
checkpointing, QLoRA, max_seq_length) for any GPU, and on the tiny base: truncation counted and reported, gradient
checkpointing computing the same loss, an out-of-memory failure told plainly, settings refused at job creation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

from ftcli.data.local_bases import TINY_NAME  # noqa: E402
from ftcli.server import hardware  # noqa: E402
from ftcli.server.hardware import Machine, UnsupportedSetting  # noqa: E402
from tests.local.zorbia import chat_records  # noqa: E402

CPU = Machine(cuda=False, bf16=False, bitsandbytes=False)
AMPERE = Machine(cuda=True, bf16=True, bitsandbytes=True)
TURING = Machine(cuda=True, bf16=False, bitsandbytes=True)


def test_precision_follows_the_machine() -> None:
    assert hardware.precision("auto", CPU) == "fp32"
    assert hardware.precision("auto", AMPERE) == "bf16"
    assert hardware.precision(None, TURING) == "fp16"  # Accelerate scales the loss


def test_a_precision_asked_for_is_honoured_where_the_machine_computes_in_it() -> None:
    assert hardware.precision("fp32", AMPERE) == "fp32" and hardware.precision("fp32", CPU) == "fp32"
    assert hardware.precision("fp16", AMPERE) == "fp16" and hardware.precision("bf16", AMPERE) == "bf16"
    with pytest.raises(UnsupportedSetting, match="'fp16' needs a CUDA GPU"):
        hardware.precision("fp16", CPU)
    with pytest.raises(UnsupportedSetting, match="'bf16' needs a GPU that computes in bfloat16"):
        hardware.precision("bf16", TURING)
    with pytest.raises(UnsupportedSetting, match="must be one of"):
        hardware.precision("fp8", AMPERE)


def test_gradient_checkpointing_is_on_for_bases_over_a_billion_parameters() -> None:
    assert not hardware.gradient_checkpointing("auto", 494_000_000)  # Qwen2.5-0.5B
    assert hardware.gradient_checkpointing(None, 1_540_000_000)  # Qwen2.5-1.5B
    assert hardware.gradient_checkpointing(True, 1_000) and not hardware.gradient_checkpointing(False, 8 * 10**9)


def test_qlora_is_refused_clearly_where_it_cant_run() -> None:
    with pytest.raises(UnsupportedSetting, match=r"needs a CUDA GPU.*ftcli\[gpu\]"):
        hardware.quantization("4bit", CPU)
    with pytest.raises(UnsupportedSetting, match="needs bitsandbytes"):
        hardware.quantization("4bit", Machine(cuda=True, bf16=True, bitsandbytes=False))
    with pytest.raises(UnsupportedSetting, match="must be one of"):
        hardware.quantization("3bit", AMPERE)
    assert hardware.quantization("4bit", AMPERE) == "4bit"
    assert hardware.quantization(None, CPU) == hardware.quantization("none", CPU) == "none"


def test_max_seq_length_defaults_to_the_context_capped_at_4096() -> None:
    assert hardware.max_seq_length(None, 2048) == 2048
    assert hardware.max_seq_length("auto", 131_072) == 4096
    assert hardware.max_seq_length(None, None) == 4096
    assert hardware.max_seq_length(8192, 131_072) == 8192


def test_out_of_memory_says_what_to_lower() -> None:
    message = hardware.out_of_memory(batch_size=16, seq_length=None, quantized=False, checkpointing=False)
    assert "batch_size (now 16)" in message and "max_seq_length" in message
    assert "gradient_checkpointing" in message and "'4bit'" in message
    import torch

    assert hardware.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not hardware.is_out_of_memory(ValueError("bad value"))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftcli.server.bases import resolve_base

    return resolve_base(TINY_NAME, tmp_path_factory.mktemp("data"))


def _train(base: Path, out: Path, **requested: Any) -> tuple[Any, Any, list[str], list[float]]:
    from ftcli.server.protocol.hyperparameters import SupervisedHyperparameters
    from ftcli.server.training import train_lora

    warnings: list[str] = []
    losses: list[float] = []
    hyper, result = train_lora(
        base,
        TINY_NAME,
        chat_records()[:6],
        output=out,
        seed=5,
        requested=SupervisedHyperparameters(**{"n_epochs": 1, "batch_size": 2, **requested}),
        on_step=lambda m: losses.append(m.train_loss),
        on_warning=warnings.append,
    )
    return hyper, result, warnings, losses


@pytest.mark.slow
def test_long_examples_are_truncated_to_max_seq_length_and_counted(tiny_base: Path, tmp_path: Path) -> None:
    hyper, result, warnings, _ = _train(tiny_base, tmp_path / "short", max_seq_length=24)
    assert hyper.max_seq_length == 24 and hyper.precision == "fp32" and hyper.gradient_checkpointing is False
    assert warnings == [
        "6 of 6 training examples are longer than max_seq_length=24 tokens and were truncated: their ends are not "
        "trained on (raise max_seq_length, or shorten them)"
    ]
    _, full, none_truncated, _ = _train(tiny_base, tmp_path / "full")
    assert result.trained_tokens == 6 * 24  # every token read: six examples cut to 24
    assert none_truncated == [] and result.trained_tokens < full.trained_tokens


@pytest.mark.slow
def test_gradient_checkpointing_trains_the_same_loss(tiny_base: Path, tmp_path: Path) -> None:
    plain, _, _, plain_losses = _train(tiny_base, tmp_path / "plain", gradient_checkpointing=False)
    kept, _, _, kept_losses = _train(tiny_base, tmp_path / "ckpt", gradient_checkpointing=True)
    assert kept.gradient_checkpointing is True and plain.gradient_checkpointing is False
    # recomputing activations in the backward changes memory, not the numbers: the same first loss (before any
    # update) and a run that still learns
    assert kept_losses[0] == pytest.approx(plain_losses[0], rel=1e-4)
    assert kept_losses[-1] < kept_losses[0]


def test_a_job_that_runs_out_of_memory_fails_with_what_to_lower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from ftcli.server import training, worker
    from ftcli.server.store import Store

    def out_of_memory(*_args: Any, **_kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    store = Store(tmp_path / "data")
    row = store.add_file(_Bytes(b"".join(_line(r) for r in chat_records()[:2])), limit=1 << 20, filename="t.jsonl",
                         purpose="fine-tune")  # fmt: skip
    requested = {"batch_size": 32, "max_seq_length": 4096}
    store.save_job({"id": "ftjob-oom", "status": "queued", "created_at": 0, "model": TINY_NAME, "seed": 1,
                    "training_file": row["id"], "validation_file": None,
                    "method": {"type": "supervised", "supervised": {"hyperparameters": requested}}})  # fmt: skip
    monkeypatch.setattr(training, "train_lora", out_of_memory)
    monkeypatch.setattr(worker, "exit_with_parent", lambda: None)
    with pytest.raises(SystemExit):
        worker.run_job(str(tmp_path / "data"), "ftjob-oom")
    job = store.job("ftjob-oom")
    assert job is not None and job["status"] == "failed" and job["error"]["code"] == "out_of_memory"
    assert "batch_size (now 32)" in job["error"]["message"] and "max_seq_length (now 4096)" in job["error"]["message"]
    assert any(e["level"] == "error" and "ran out of memory" in e["message"] for e in store.events("ftjob-oom"))


def test_settings_this_server_cant_honour_are_refused_when_the_job_is_created(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ftcli.server.app import create_app

    with TestClient(create_app(tmp_path / "data"), base_url="http://127.0.0.1:8765") as client:
        file_id = client.post(
            "/v1/files", files={"file": ("t.jsonl", b"".join(_line(r) for r in chat_records()[:2]))},
            data={"purpose": "fine-tune"},
        ).json()["id"]  # fmt: skip

        def create(**hyperparameters: Any) -> Any:
            body = {"model": TINY_NAME, "training_file": file_id, "hyperparameters": hyperparameters}
            return client.post("/v1/fine_tuning/jobs", json=body)

        if not torch_cuda():
            refused = create(quantization="4bit")
            assert refused.status_code == 400 and "needs a CUDA GPU" in refused.json()["error"]["message"]
            assert refused.json()["error"]["param"] == "hyperparameters.quantization"
        assert create(max_seq_length=8).status_code == 400
        assert create(gradient_checkpointing="maybe").status_code == 400
        assert create(fsdp="yes").json()["error"]["param"] == "hyperparameters.fsdp"
        both = create(fsdp=True, quantization="4bit")
        assert both.status_code == 400 and "can't be combined" in both.json()["error"]["message"]
        assert create(max_seq_length=512, gradient_checkpointing=True, fsdp=True).status_code == 200


def torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _line(record: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data, b""
        return chunk


def _cuda_and_bitsandbytes() -> bool:
    import importlib.util

    return torch_cuda() and importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _cuda_and_bitsandbytes(), reason="needs a CUDA GPU with bitsandbytes (QLoRA)")
def test_qlora_trains_a_four_bit_base_on_a_gpu(tiny_base: Path, tmp_path: Path) -> None:
    hyper, result, _, losses = _train(tiny_base, tmp_path / "qlora", quantization="4bit", n_epochs=3)
    assert hyper.quantization == "4bit" and hyper.precision in ("bf16", "fp16")
    assert result.trained_tokens > 0 and losses[-1] < losses[0]
    assert (tmp_path / "qlora" / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--nodes", "2"], "--nodes needs --rendezvous HOST:PORT"),
        (["--nodes", "2", "--rendezvous", "head"], "--nodes needs --rendezvous HOST:PORT"),
        (["--rendezvous", "head:29500"], "--rendezvous is for a job trained on several machines"),
        (
            [
                "--nodes",
                "2",
                "--rendezvous",
                "head:29500",
                "--allow-unauthenticated-rendezvous",
                "--parallel-jobs",
                "2",
            ],
            "run one at a time",
        ),
    ],
)
def test_serve_refuses_an_incomplete_multi_machine_setup(args: list[str], says: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ftcli.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
