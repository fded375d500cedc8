"""Issue 30's faster and leaner training paths give what the plain ones give, within tolerances that hold on any CPU:
packed attention (each example of a packed row attends to itself, with no mask) against transformers' SDPA over the
block-diagonal mask; the lean RMSNorm and SwiGLU and the answer-only loss (logits of the answer tokens only, a slice at
a time, its gradient computed on the way) against transformers' loss and gradients; a batch trained in several passes
against one; bf16 on a CPU against fp32."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local, pytest.mark.slow]

import torch  # noqa: E402

from ftcli.data.chat_template import IGNORE, encode_chat  # noqa: E402
from ftcli.server import hardware, lean_layers, packed_attention  # noqa: E402
from ftcli.server.chat_tokens import collate, pack  # noqa: E402
from ftcli.server.objectives import Supervised, passes  # noqa: E402
from ftcli.server.training import load_base  # noqa: E402
from tests.local.recorded import Recorded  # noqa: E402
from tests.local.zorbia import QA, SYSTEM, chat_records  # noqa: E402


def chats(weight_zero: bool = False) -> list[list[dict[str, Any]]]:
    """Chats of different lengths; with `weight_zero`, multi-turn ones whose first answer is not trained."""
    out = []
    for index, (question, answer) in enumerate(QA):
        chat = [
            SYSTEM,
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer * (1 + index % 3)},
        ]
        if weight_zero and index % 2:
            chat[2] = {**chat[2], "weight": 0}
            chat += [{"role": "user", "content": "And again?"}, {"role": "assistant", "content": answer}]
        out.append(chat)
    return out


def fresh(base: Path) -> tuple[Any, Any]:
    """The base on the plain path (transformers' SDPA), in fp32, deterministic."""
    model, tokenizer = load_base(base)
    model.set_attn_implementation("sdpa")
    return model.eval(), tokenizer


def test_packed_attention_gives_the_logits_of_the_masked_rows(tiny_base: Path) -> None:
    model, tokenizer = fresh(tiny_base)
    encoded = [encode_chat(tokenizer, chat) for chat in chats()]
    longest = max(len(e.input_ids) for e in encoded)
    batches = {
        "one row": pack(encoded, tokenizer.pad_token_id, row_tokens=None),
        "rows with padding": pack(encoded, tokenizer.pad_token_id, row_tokens=longest * 3),
        "padded, a mask": collate(encoded, tokenizer.pad_token_id),
    }
    assert batches["one row"]["input_ids"].shape[0] == 1 and batches["rows with padding"]["input_ids"].shape[0] > 1
    with torch.no_grad():
        masked = {name: model(**rows, use_cache=False).logits for name, rows in batches.items()}
        assert packed_attention.use_packed_attention(model)
        split = {name: model(**rows, use_cache=False).logits for name, rows in batches.items()}
    for name in batches:
        keep = batches[name]["labels"] != IGNORE  # padding's logits mean nothing on either path
        difference = (masked[name] - split[name]).abs()[keep].max()
        assert float(difference) < 1e-4 * float(masked[name].abs().max()), name


def test_a_sliding_window_shorter_than_an_example_is_kept() -> None:
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=6, max_position_embeddings=128,
    )  # fmt: skip
    model = MistralForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")
    lengths = [20, 5, 11]  # two examples longer than the window, one shorter
    ids = torch.randint(3, 97, (1, sum(lengths)))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        masked = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        assert packed_attention.use_packed_attention(model)
        split = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    assert float((masked - split).abs().max()) < 1e-4 * float(masked.abs().max())


def test_a_base_with_other_attention_keeps_transformers_attention() -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16,
    )  # fmt: skip
    model = Gemma2ForCausalLM(config)
    assert not packed_attention.use_packed_attention(model)  # soft-capped attention logits
    assert model.config._attn_implementation != packed_attention.NAME


def _lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # not zero, as a trained adapter: every LoRA weight then gets a gradient
            torch.nn.init.normal_(parameter, std=0.05)
    return model


@pytest.mark.parametrize("one_row", [True, False], ids=["packed attention", "transformers' attention"])
def test_the_answer_only_loss_has_transformers_loss_and_gradients(tiny_base: Path, one_row: bool) -> None:
    def run(fast: bool) -> tuple[float, float, dict[str, torch.Tensor]]:
        model, tokenizer = fresh(tiny_base)
        model = _lora(model)
        objective = Supervised(tokenizer)
        if fast:
            assert objective.speed_up(model) == ["packed attention", "lean RMSNorm and SwiGLU", "answer-only loss"]
            if not one_row:  # the loss alone, over several padded rows and transformers' attention
                model.get_base_model().set_attn_implementation("sdpa")
                objective.row_tokens = 64
        batch = [objective.encode({"messages": chat}) for chat in chats(weight_zero=True)]
        loss, accuracy = objective.step(model, batch)
        loss.backward()
        gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), accuracy, gradients

    plain_loss, plain_accuracy, plain = run(fast=False)
    fast_loss, fast_accuracy, fast = run(fast=True)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-4)
    assert fast_accuracy == pytest.approx(plain_accuracy, abs=1e-6)
    assert plain.keys() == fast.keys() and len(plain) > 0
    for name, gradient in plain.items():
        assert float((fast[name] - gradient).norm()) <= 1e-3 * float(gradient.norm()) + 1e-9, name


def test_bf16_training_on_a_cpu_follows_fp32(tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 where the CPU computes in it (emulated here where it doesn't: slower, the same numbers): the frozen base
    held in bf16, LoRA's weights in fp32, and losses within a few percent of fp32 training's."""
    import safetensors.torch

    from ftcli.server.protocol.hyperparameters import SupervisedHyperparameters
    from ftcli.server.training import train_lora

    monkeypatch.setattr(hardware, "cpu_computes_bf16", lambda cpuinfo=None: True)
    losses = {}
    for precision in ("fp32", "bf16"):
        recorded = Recorded()
        requested = SupervisedHyperparameters(n_epochs=6, batch_size=4, precision=precision)
        hyper, _ = train_lora(
            tiny_base, "ftcli/tiny", chat_records(), output=tmp_path / precision, seed=0, requested=requested,
            reporter=recorded,
        )  # fmt: skip
        assert hyper.precision == precision
        losses[precision] = recorded.losses
        adapter = safetensors.torch.load_file(tmp_path / precision / "adapter" / "adapter_model.safetensors")
        assert {t.dtype for t in adapter.values()} == {torch.float32}  # LoRA's weights are trained in fp32
    fp32, bf16 = losses["fp32"], losses["bf16"]
    assert len(fp32) == len(bf16) > 6
    for run in (fp32, bf16):  # both learn: the last epoch's mean loss well below the first's (measured: 0.78)
        assert sum(run[-3:]) < 0.85 * sum(run[:3]), run
    assert fp32 != bf16  # bf16 really computed: rounding makes some loss differ (measured: by up to 0.7 %)
    for step, (a, b) in enumerate(zip(fp32, bf16, strict=True)):
        assert b == pytest.approx(a, rel=0.05), (step, fp32, bf16)


def test_lora_layers_under_autocast_keep_one_copy_of_their_input_and_the_same_gradients(tiny_base: Path) -> None:
    """Under bf16 autocast a training pass leaves LoRA's input as it comes (PEFT would cast it to fp32, and autocast
    back to bf16: a copy per LoRA layer kept for the backward): the same loss and gradients, less kept."""
    from ftcli.server.training import _accelerator, lora_inputs_uncast

    def run(uncast: bool) -> tuple[float, dict[str, torch.Tensor], int]:
        model, tokenizer = load_base(tiny_base, bf16=True)
        model = _lora(model)
        objective = Supervised(tokenizer)
        objective.speed_up(model)
        batch = [objective.encode({"messages": chat}) for chat in chats()]
        accelerator = _accelerator("bf16")
        kept: dict[int, int] = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        uncasting = lora_inputs_uncast(accelerator, model) if uncast else contextlib.nullcontext()
        with uncasting, accelerator.autocast(), torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            loss, _ = objective.step(model, batch)
        loss.backward()
        gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), gradients, sum(kept.values())

    cast_loss, cast, cast_kept = run(uncast=False)
    loss, uncast, uncast_kept = run(uncast=True)
    assert loss == pytest.approx(cast_loss, rel=1e-3)
    assert cast.keys() == uncast.keys() and len(cast) > 0
    for name, gradient in cast.items():
        assert float((uncast[name] - gradient).norm()) <= 1e-2 * float(gradient.norm()) + 1e-9, name
    assert uncast_kept < 0.9 * cast_kept, (uncast_kept, cast_kept)


def test_a_bf16_job_holds_its_base_in_bf16(tiny_base: Path) -> None:
    model, _ = load_base(tiny_base, bf16=True)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    model, _ = load_base(tiny_base)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}


def test_a_batch_in_several_passes_gives_the_gradients_of_one(tiny_base: Path) -> None:
    """`tokens_per_pass` splits a batch into passes whose gradients add up, each weighed by its share of the answer
    tokens: the step's loss, accuracy and gradients are those of one pass over the whole batch."""
    from ftcli.server.training import Hyperparameters, _accelerator, _accumulate

    def run(split: bool) -> tuple[float, float, dict[str, torch.Tensor]]:
        model, tokenizer = fresh(tiny_base)
        model = _lora(model)
        objective = Supervised(tokenizer)
        objective.speed_up(model)
        batch = [objective.encode({"messages": chat}) for chat in chats(weight_zero=True)]
        tokens_per_pass = max(len(e.input_ids) for e in batch) if split else None
        if split:  # really split, into passes of unequal answer counts
            assert len(passes(batch, tokens_per_pass)) >= 3
        hyper = Hyperparameters(n_epochs=1, batch_size=len(batch), learning_rate_multiplier=1.0, learning_rate=1e-3)
        loss, accuracy = _accumulate(model, objective, batch, replace(hyper, tokens_per_pass=tokens_per_pass),
                                     _accelerator("fp32"))  # fmt: skip
        gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss), accuracy, gradients

    whole_loss, whole_accuracy, whole = run(split=False)
    split_loss, split_accuracy, split = run(split=True)
    assert split_loss == pytest.approx(whole_loss, rel=1e-4)
    assert split_accuracy == pytest.approx(whole_accuracy, abs=1e-6)
    assert whole.keys() == split.keys() and len(whole) > 0
    for name, gradient in whole.items():
        assert float((split[name] - gradient).norm()) <= 1e-3 * float(gradient.norm()) + 1e-9, name


def test_lean_layers_replace_only_the_layers_they_compute() -> None:
    """A norm or MLP is replaced only where its own forward and the lean one agree: a GELU MLP keeps its own."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama(activation: str) -> Any:
        config = LlamaConfig(
            vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, hidden_act=activation,
        )  # fmt: skip
        torch.manual_seed(0)
        return LlamaForCausalLM(config)

    swiglu, gelu = llama("silu"), llama("gelu")
    ids = torch.randint(3, 97, (1, 12))
    before = gelu(input_ids=ids).logits.detach()
    assert lean_layers.use_lean_layers(swiglu) == 2 * 2 + 1 + 2  # two norms and the MLP a layer, the final norm
    assert lean_layers.use_lean_layers(gelu) == 2 * 2 + 1  # the norms only
    assert all("forward" not in vars(layer.mlp) for layer in gelu.model.layers)
    after = gelu(input_ids=ids).logits.detach()
    assert float((after - before).abs().max()) < 1e-5 * float(before.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_sliced_swiglu_backward_gives_autograds_gradients_and_leaves_its_inputs(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worked out a slice of rows at a time (here 7 rows of 96 values, so 5 slices, the last a short one), in place on
    buffers of its own: the gradients of plain `silu(gate) * up` in fp32, within bf16's rounding where the layers are
    bf16, for an upstream gradient that isn't contiguous; the saved gate and up are left as they were."""
    monkeypatch.setattr(lean_layers, "BACKWARD_SLICE_VALUES", 7 * 96)
    generator = torch.Generator().manual_seed(0)
    gate, up = (torch.randn(3, 11, 96, generator=generator).to(dtype).requires_grad_() for _ in range(2))
    weight = torch.randn(11, 3, 96, generator=generator)  # (length, batch, width): its transpose isn't contiguous
    kept = gate.detach().clone(), up.detach().clone()

    product = lean_layers._SwiGlu.apply(gate, up)  # type: ignore[no-untyped-call]
    (product.transpose(0, 1).float() * weight).sum().backward()

    wide_gate, wide_up = (t.detach().float().requires_grad_() for t in (gate, up))
    (torch.nn.functional.silu(wide_gate) * wide_up * weight.transpose(0, 1)).sum().backward()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    for lean, plain in ((gate.grad, wide_gate.grad), (up.grad, wide_up.grad)):
        assert lean is not None and plain is not None and lean.dtype == dtype
        assert float((lean.float() - plain).abs().max()) <= tolerance * float(plain.abs().max())
    assert torch.equal(gate.detach(), kept[0]) and torch.equal(up.detach(), kept[1])


def test_the_swiglu_backward_is_sliced_on_a_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU (here the meta device, which runs no kernel) slices would cost kernel launches: one piece there."""
    monkeypatch.setattr(lean_layers, "BACKWARD_SLICE_VALUES", 7 * 96)
    pieces: list[int] = []
    whole = lean_layers._swiglu_backward
    monkeypatch.setattr(lean_layers, "_swiglu_backward", lambda *piece: (pieces.append(len(piece[0])), whole(*piece)))
    for device, expected in (("cpu", [7, 7, 7, 7, 5]), ("meta", [33])):
        pieces.clear()
        gate, up = (torch.randn(3, 11, 96, device=device).requires_grad_() for _ in range(2))
        lean_layers._SwiGlu.apply(gate, up).sum().backward()  # type: ignore[no-untyped-call]
        assert pieces == expected, device
