"""Training that fits real models (issues 14, 22), tested on a CPU: the machine-dependent decisions (precision,
gradient checkpointing, QLoRA, max_seq_length) for any GPU, and on the tiny base: truncation counted and reported,
gradient checkpointing really recomputing activations with the same losses, QLoRA training a 4-bit base (bitsandbytes'
CPU backend) into an adapter plain peft loads, an out-of-memory failure told plainly, settings refused at job
creation."""

from __future__ import annotations

import os
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
    with pytest.raises(UnsupportedSetting, match="'bf16' needs a GPU or CPU that computes in bfloat16"):
        hardware.precision("bf16", TURING)
    with pytest.raises(UnsupportedSetting, match="must be one of"):
        hardware.precision("fp8", AMPERE)


def test_bf16_is_chosen_where_the_cpu_computes_in_it() -> None:
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
    assert hardware.cpu_computes_bf16(flags.format("avx512_bf16"))
    assert hardware.cpu_computes_bf16(flags.format("amx_bf16 amx_tile"))
    assert not hardware.cpu_computes_bf16(flags.format("avx512bw"))  # bf16 emulated there: slower than fp32
    assert not hardware.cpu_computes_bf16("")
    with_bf16 = Machine(cuda=False, bf16=True, bitsandbytes=False)
    without = Machine(cuda=False, bf16=False, bitsandbytes=False)
    assert hardware.precision("auto", with_bf16) == "bf16" and hardware.precision(None, without) == "fp32"
    assert hardware.precision("fp32", with_bf16) == "fp32"
    with pytest.raises(UnsupportedSetting, match="AVX512-BF16"):
        hardware.precision("bf16", without)


def test_gradient_checkpointing_is_on_for_bases_over_a_billion_parameters() -> None:
    assert not hardware.gradient_checkpointing("auto", 494_000_000)  # Qwen2.5-0.5B
    assert hardware.gradient_checkpointing(None, 1_540_000_000)  # Qwen2.5-1.5B
    assert hardware.gradient_checkpointing(True, 1_000) and not hardware.gradient_checkpointing(False, 8 * 10**9)


def test_qlora_needs_bitsandbytes_and_runs_on_a_gpu_or_a_cpu() -> None:
    with pytest.raises(UnsupportedSetting, match=r"needs bitsandbytes.*ftcli\[gpu\]"):
        hardware.quantization("4bit", CPU)
    with pytest.raises(UnsupportedSetting, match="needs bitsandbytes"):
        hardware.quantization("4bit", Machine(cuda=True, bf16=True, bitsandbytes=False))
    with pytest.raises(UnsupportedSetting, match="must be one of"):
        hardware.quantization("3bit", AMPERE)
    assert hardware.quantization("4bit", AMPERE) == "4bit"
    assert (
        hardware.quantization("4bit", Machine(cuda=False, bf16=False, bitsandbytes=True)) == "4bit"
    )  # its CPU backend
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


def _train(base: Path, out: Path, **requested: Any) -> tuple[Any, Any, list[str], list[float]]:
    from ftcli.server.protocol.hyperparameters import SupervisedHyperparameters
    from ftcli.server.training import train_lora
    from tests.local.recorded import Recorded

    recorded = Recorded()
    hyper, result = train_lora(
        base,
        TINY_NAME,
        chat_records()[:6],
        output=out,
        seed=5,
        requested=SupervisedHyperparameters(**{"n_epochs": 1, "batch_size": 2, **requested}),
        reporter=recorded,
    )
    return hyper, result, recorded.warnings, recorded.losses


@pytest.mark.slow
def test_long_examples_are_truncated_to_max_seq_length_and_counted(tiny_base: Path, tmp_path: Path) -> None:
    hyper, result, warnings, _ = _train(tiny_base, tmp_path / "short", max_seq_length=24)
    assert hyper.max_seq_length == 24 and hyper.gradient_checkpointing is False
    assert hyper.precision == hardware.precision(None, Machine.this_one())  # this CPU's: bf16 where it computes in it
    assert warnings == [
        "6 of 6 training examples are longer than max_seq_length=24 tokens and were truncated: their ends are not "
        "trained on (raise max_seq_length, or shorten them)"
    ]
    _, full, none_truncated, _ = _train(tiny_base, tmp_path / "full")
    assert result.trained_tokens == 6 * 24  # every token read: six examples cut to 24
    assert none_truncated == [] and result.trained_tokens < full.trained_tokens


def _loaded_models(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every base model train_lora loads, kept for the test to look at (and hook) as it is loaded."""
    from ftcli.server import training

    loaded: list[Any] = []
    load = training.load_base

    def keep(path: Path, **kwargs: Any) -> tuple[Any, Any]:
        model, tokenizer = load(path, **kwargs)
        loaded.append(model)
        return model, tokenizer

    monkeypatch.setattr(training, "load_base", keep)
    return loaded


@pytest.mark.slow
def test_gradient_checkpointing_recomputes_activations_and_trains_the_same_losses(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers.models.llama.modeling_llama import LlamaMLP  # the tiny base is a Llama

    calls = [0]

    def counted(module: Any, _args: Any) -> None:
        calls[0] += isinstance(module, LlamaMLP) and torch.is_grad_enabled()  # not lean_layers probe

    # counted at every call of an MLP (whatever its forward, lean or not), which the backward's recomputation repeats
    hook = torch.nn.modules.module.register_module_forward_pre_hook(counted)
    try:
        plain, _, _, plain_losses = _train(tiny_base, tmp_path / "plain", gradient_checkpointing=False, n_epochs=2)
        plain_calls, calls[0] = calls[0], 0
        kept, _, _, kept_losses = _train(tiny_base, tmp_path / "ckpt", gradient_checkpointing=True, n_epochs=2)
    finally:
        hook.remove()
    assert kept.gradient_checkpointing is True and plain.gradient_checkpointing is False
    # on: every layer's forward runs again in the backward (its activations were not kept), so twice per step
    assert plain_calls > 0 and calls[0] == 2 * plain_calls, (plain_calls, calls[0])
    # and recomputing changes memory, not the numbers: the same loss at every one of the six steps, updates included
    assert len(kept_losses) == len(plain_losses) == 6
    assert kept_losses == pytest.approx(plain_losses, rel=1e-4, abs=1e-5)
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

        without = Machine(cuda=torch_cuda(), bf16=False, bitsandbytes=False)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(hardware.Machine, "this_one", classmethod(lambda _cls: without))
            refused = create(quantization="4bit")
            assert refused.status_code == 400 and "needs bitsandbytes" in refused.json()["error"]["message"]
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


def _loss(model: Any, tokenizer: Any) -> float:
    import torch

    from ftcli.data.chat_template import encode_chat
    from ftcli.server.chat_tokens import collate

    rows = collate([encode_chat(tokenizer, r["messages"]) for r in chat_records()[:6]], tokenizer.pad_token_id)
    with torch.no_grad():
        return float(model(**rows).loss)


@pytest.mark.slow
def test_qlora_trains_a_four_bit_base_and_its_adapter_loads_in_plain_peft(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU (bf16 or fp16) or, through bitsandbytes' CPU backend, on a CPU (fp32 around bf16 4-bit matmuls)."""
    pytest.importorskip(
        "bitsandbytes", reason="bitsandbytes (the gpu extra) is not installed: scripts/test installs it"
    )
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = _loaded_models(monkeypatch)
    hyper, result, _, losses = _train(tiny_base, tmp_path / "qlora", quantization="4bit", n_epochs=3)
    assert hyper.quantization == "4bit" and hyper.precision == hardware.precision(None, Machine.this_one())
    # the base really was 4-bit: its linear layers NF4, their weights packed two to a byte
    four_bit = [m for m in loaded[0].modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit and all(m.weight.dtype == torch.uint8 and m.weight.quant_type == "nf4" for m in four_bit)
    # it learned: three epochs of three steps, the last epoch's mean loss below the first's
    assert result.trained_tokens > 0 and len(losses) == 9 and sum(losses[-3:]) < sum(losses[:3])
    adapter = tmp_path / "qlora" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    # the adapter is plain LoRA: peft puts it on the unquantised base, where it still lowers the training loss
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    before = _loss(base, tokenizer)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), adapter).eval()
    assert not any(type(m).__name__ == "Linear4bit" for m in tuned.modules())
    assert _loss(tuned, tokenizer) < before - 0.05


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


def test_a_pass_holds_the_tokens_whose_activations_fit_the_machines_budget() -> None:
    from types import SimpleNamespace

    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    per_token = 30 * (12 * 576 + 4 * 1536) * 2  # bf16
    on_cpu = hardware.tokens_per_pass(smollm2, element_bytes=2, checkpointing=False, gpu_bytes=None)
    assert on_cpu == hardware.CPU_ACTIVATIONS_BYTES // per_token
    assert hardware.tokens_per_pass(smollm2, element_bytes=4, checkpointing=False, gpu_bytes=None) == on_cpu // 2
    on_gpu = hardware.tokens_per_pass(smollm2, element_bytes=2, checkpointing=False, gpu_bytes=80 << 30)
    assert on_gpu == int((80 << 30) * hardware.GPU_ACTIVATIONS_SHARE) // per_token
    checkpointed = hardware.tokens_per_pass(smollm2, element_bytes=2, checkpointing=True, gpu_bytes=80 << 30)
    assert checkpointed is not None and on_gpu is not None and checkpointed > 10 * on_gpu  # only layer inputs kept
    assert hardware.tokens_per_pass(SimpleNamespace(), element_bytes=2, checkpointing=False, gpu_bytes=1 << 30) is None


def test_a_pass_on_a_cpu_holds_at_most_the_tokens_that_keep_its_multiplies_at_full_speed() -> None:
    """Past CPU_TOKENS_PER_PASS a CPU is no faster, only fuller: a small model (whose activations would fit ten
    times as many) or a checkpointed one is held to it on a CPU, not on a GPU."""
    from types import SimpleNamespace

    tiny = SimpleNamespace(hidden_size=192, intermediate_size=512, num_hidden_layers=4)
    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    cap = hardware.CPU_TOKENS_PER_PASS
    for config, checkpointing in ((tiny, False), (smollm2, True)):
        assert hardware.tokens_per_pass(config, element_bytes=2, checkpointing=checkpointing, gpu_bytes=None) == cap
        on_gpu = hardware.tokens_per_pass(config, element_bytes=2, checkpointing=checkpointing, gpu_bytes=1 << 30)
        assert on_gpu is not None and on_gpu > cap
    unknown_shape = SimpleNamespace()
    assert hardware.tokens_per_pass(unknown_shape, element_bytes=2, checkpointing=False, gpu_bytes=None) == cap


def test_first_fit_groups_within_the_capacity_and_a_larger_item_alone() -> None:
    from ftcli.server.chat_tokens import first_fit

    groups = first_fit([5, 9, 3, 12, 1, 4], lambda n: n, 10)
    assert sorted(n for group in groups for n in group) == [1, 3, 4, 5, 9, 12]
    assert [12] in groups  # larger than the capacity: alone
    assert all(sum(group) <= 10 for group in groups if group != [12])
    assert len(groups) == 4  # 12 | 9+1 | 5+4 | 3: first-fit decreasing


def test_the_training_process_bounds_its_kernel_caches_and_keeps_a_users_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ftcli.server import allocator

    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    allocator.release_freed_memory.cache_clear()
    glibc = allocator.release_freed_memory()
    assert os.environ["LRU_CACHE_CAPACITY"] == allocator.KERNEL_CACHES["LRU_CACHE_CAPACITY"]
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
    assert glibc == (allocator._glibc() is not None)
    allocator.trim()  # callable anywhere; a no-op without glibc
