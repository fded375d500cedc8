"""Training real model shapes on one GPU (issues 14, 22): ftcli's trainer against TRL's `SFTTrainer`, on random-weight
models of Qwen2.5-0.5B, Qwen2.5-1.5B (LoRA, bf16) and Llama-3.1-8B (QLoRA, NF4) shapes: configs written here, weights
made in the process (nothing downloads, and the 8B base is built on the meta device and quantised layer by layer
straight into 4-bit: its 16 GB of bf16 weights are never held).

What each side packs: ftcli packs each batch of 8 examples into one row, attention split at the examples and the loss
on the answer tokens only (server/packed_attention.py, server/answer_loss.py); TRL packs the whole dataset best-fit
decreasing into rows of 2048 tokens, a step taking as many rows as hold 8 average examples. Both are padding-free,
positions restarting per example; both train the same LoRA (rank 16, alpha 32, all
linear layers), rate, weight decay, clipping and precision (bf16), with gradient checkpointing as ftcli decides it for
the shape (on above 1B parameters), set explicitly on both sides. Every side counts the same tokens the same way:
tokens read (each example's every token) and target tokens (the answers'), step by step.

The timing plan (proven at toy size on the CPU by `--smoke`, which CI runs):
- each side runs in its own process; model building is outside the timing, and so is saving (the window ends at the
  last optimiser step);
- the window is steady state: from the end of the warm-up steps (default 3) to the end of the last step, CUDA
  synchronised at both ends; tokens/s = tokens read in that window / its seconds;
- at least 3 rounds, alternating which side goes first, rounds outermost (every shape gets a round before any gets a
  second); each figure is the median of the rounds; a time budget (default 270 s) leaves out what wouldn't fit, and
  says so;
- memory is `torch.cuda.max_memory_reserved()` over the whole process (what the card must hold, the model included);
- MFU = (4·N + A) × tokens read per second / the card's dense bf16 peak, where N counts the weights of every matrix
  multiply (the layers' projections and the LM head): with LoRA the frozen weights need the backward through the
  activations (2N) but no weight gradients, so 2N forward + 2N backward; A = 6·L·d·Σ s(s+1) / Σ s is causal attention
  (QKᵀ and AV, 4·d per attended pair forward, ×3 with the backward) for examples of s tokens each attending only to
  itself, averaged over the data; the peak comes from PEAK_BF16 by the present card's name (none: no MFU).

    bash bench/gpu                 # on a CUDA machine: every shape, writes bench/RESULTS-gpu.md (under 5 minutes)
    python bench/gpu_train.py --smoke   # anywhere: toy shapes on the CPU, the same plan (CI runs it)

Targets: ≥ 1.3× TRL's tokens/s at equal or lower peak memory; Llama-3.1-8B QLoRA ≤ 20 GB peak; 0.5B LoRA ≥ 40 % MFU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import about  # noqa: E402
from proctree import measure  # noqa: E402
from train_speed import WEIGHT_DECAY, WORK, examples  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS-gpu.md"
ROW = 2048  # TRL's packed rows, and the longest example either side trains on
BATCH = 8
LORA = {"lora_rank": 16, "lora_alpha": 32}
LEARNING_RATE = 2e-4  # ftcli's default for a base it has no defaults for
# name: (architecture, hidden, intermediate, layers, heads, kv heads, vocabulary, tied embeddings)
SHAPES: dict[str, tuple[str, int, int, int, int, int, int, bool]] = {
    "tiny": ("qwen2", 64, 128, 2, 4, 2, 0, True),  # vocabulary 0: the tokenizer's own (the CPU smoke run)
    "qwen2.5-0.5b": ("qwen2", 896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": ("qwen2", 1536, 8960, 28, 12, 2, 151936, True),
    "llama-3.1-8b": ("llama", 4096, 14336, 32, 32, 8, 128256, False),
}
# (shape, quantization, examples per process, most rounds): the GPU plan, one entry per shape
PLAN = [
    ("qwen2.5-0.5b", "none", 192, 3),
    ("qwen2.5-1.5b", "none", 160, 3),
    ("llama-3.1-8b", "4bit", 80, 3),
]
# the CPU smoke: the same plan at toy size, the 4-bit path (bitsandbytes' CPU backend) in one round
SMOKE = [("tiny", "none", 48, 3), ("tiny", "4bit", 40, 1)]
SIDES = ("ftcli", "trl")
# Dense bf16 peak FLOP/s (no sparsity) by the card's name as torch reports it; the first match wins, so the more
# specific names come first.
PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM (HBM3)
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
]


def peak_flops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16 if key in device_name), None)


def matmul_parameters(shape: str, vocab: int | None = None) -> int:
    """N: the weights every token is multiplied by (attention and MLP projections, the LM head); embeddings are a
    lookup, norms are not matrix multiplies."""
    _, hidden, intermediate, layers, heads, kv_heads, default_vocab, _ = SHAPES[shape]
    kv = hidden // heads * kv_heads
    per_layer = hidden * (hidden + 2 * kv + hidden) + 3 * hidden * intermediate
    return layers * per_layer + (vocab or default_vocab) * hidden


def attention_flops_per_token(shape: str, lengths: list[int]) -> float:
    """A: causal attention's training FLOPs per token, each example of s tokens attending only to itself."""
    _, hidden, _, layers, _, _, _, _ = SHAPES[shape]
    return 6 * layers * hidden * sum(s * (s + 1) for s in lengths) / sum(lengths)


def flops_per_token(shape: str, lengths: list[int], vocab: int | None = None) -> float:
    return 4 * matmul_parameters(shape, vocab) + attention_flops_per_token(shape, lengths)


def _config(shape: str, vocab: int) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    kind, hidden, intermediate, layers, heads, kv_heads, default_vocab, tied = SHAPES[shape]
    config_class = Qwen2Config if kind == "qwen2" else LlamaConfig
    return config_class(
        vocab_size=default_vocab or vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tied,
        max_position_embeddings=ROW * 2,
    )


def build(shape: str, quantization: str) -> tuple[Any, Any]:
    """(model, tokenizer): the shape with seeded random weights, on the GPU (else the CPU), bf16 on a GPU; 4-bit:
    made on the meta device, each linear layer's weights drawn and quantised to NF4 in turn."""
    import torch
    from transformers import AutoModelForCausalLM

    from ftcli.data.local_bases import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # its ids fall inside every vocabulary here
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = _config(shape, len(tokenizer))
    torch.manual_seed(0)
    if quantization != "4bit":
        with device:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model, tokenizer
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    _quantise_on_the_way(model, device)
    return model, tokenizer


def _quantise_on_the_way(model: Any, device: Any) -> None:
    """Replace a meta model's linear layers (the LM head excepted, as transformers' own 4-bit loading does) by NF4
    layers whose random weights are drawn one matrix at a time and quantised as they land on the device; give the
    other parameters real values (norms 1, biases 0, embeddings N(0, 0.02)) and rebuild the rotary tables."""
    import bitsandbytes as bnb
    import torch
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    from ftcli.server import hardware

    config = hardware.four_bit_config()
    replace_with_bnb_linear(model, modules_to_not_convert=["lm_head"], quantization_config=config)
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = torch.randn(module.out_features, module.in_features, dtype=torch.bfloat16, device=device) * 0.02
            module.weight = bnb.nn.Params4bit(
                weight, requires_grad=False, quant_type="nf4", compress_statistics=True, module=module
            ).to(device)  # quantised here
            del weight
    for name, parameter in list(model.named_parameters()):
        if parameter.device.type != "meta":
            continue
        if "norm" in name:
            value = torch.ones(parameter.shape, dtype=torch.float32, device=device)
        elif name.endswith("bias"):
            value = torch.zeros(parameter.shape, dtype=torch.bfloat16, device=device)
        else:
            value = torch.randn(parameter.shape, dtype=torch.bfloat16, device=device) * 0.02
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, torch.nn.Parameter(value, requires_grad=False))
    if model.config.tie_word_embeddings:
        model.tie_weights()
    for owner, module in list(model.named_modules()):
        if any(b.device.type == "meta" for b in module.buffers(recurse=False)):  # rotary tables: made at init
            with device:
                model.set_submodule(owner, type(module)(model.config))
    model.is_loaded_in_4bit = True  # what transformers' 4-bit loading marks, and peft reads


class StepClock:
    """Step timestamps (CUDA synchronised) and each step's tokens: the steady-state window after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.ends: list[float] = []
        self.read: list[int] = []
        self.target: list[int] = []

    def tokens(self, read: int, target: int) -> None:
        """One forward pass's tokens: the passes of one step (a CPU's, at most 1,024 tokens each) add up."""
        if len(self.read) > len(self.ends):  # the step under way had a pass already
            self.read[-1] += read
            self.target[-1] += target
        else:
            self.read.append(read)
            self.target.append(target)

    def step_done(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())

    def figures(self) -> dict[str, Any]:
        if len(self.ends) != len(self.read):
            raise SystemExit(f"{len(self.ends)} steps timed, {len(self.read)} counted: the clock missed a step")
        if len(self.ends) < self.warmup + 2:
            raise SystemExit(f"{len(self.ends)} steps: too few for {self.warmup} warm-up steps and a window")
        window = slice(self.warmup, None)
        return {
            "steps": len(self.ends),
            "window_steps": len(self.ends) - self.warmup,
            "window_seconds": self.ends[-1] - self.ends[self.warmup - 1],
            "window_tokens_read": sum(self.read[window]),
            "tokens_read": sum(self.read),
            "target_tokens": sum(self.target),
        }


def _asked(quantization: str, checkpointing: bool) -> dict[str, Any]:
    return {
        "n_epochs": 1,
        "batch_size": BATCH,
        "quantization": quantization,
        "max_seq_length": ROW,
        "gradient_checkpointing": checkpointing,
        **LORA,
    }


def run_ftcli(model: Any, tokenizer: Any, data: list[dict[str, Any]], asked: dict[str, Any], clock: StepClock) -> Any:
    """`train_lora` as `ftcli serve` runs it, handed the model built here (its loading is not timed anyway); each
    batch's tokens are counted as the trainer reads them."""
    from ftcli.server import objectives, training
    from ftcli.server.protocol.hyperparameters import parse
    from ftcli.server.reporting import Silent, StepMetrics

    class Timed(Silent):
        def step(self, metrics: StepMetrics) -> None:  # noqa: ARG002 (after each optimizer step)
            clock.step_done()

    step = objectives.Supervised.step

    def counted(self: Any, model: Any, batch: list[Any]) -> Any:
        clock.tokens(sum(item.tokens for item in batch), sum(item.trained_tokens for item in batch))
        return step(self, model, batch)

    objectives.Supervised.step = counted  # type: ignore[method-assign]
    training.load_base = lambda _path, **_how: (model, tokenizer)  # noqa: ARG005 (built here, held as built)
    hyper, _ = training.train_lora(
        WORK / "unused-base",
        "bench",
        data,
        output=WORK / "gpu-ftcli-run",
        seed=0,
        requested=parse("supervised", asked),
        reporter=Timed(),
    )
    return {"precision": hyper.precision, "checkpointing": hyper.gradient_checkpointing}


def run_trl(model: Any, tokenizer: Any, data: list[dict[str, Any]], asked: dict[str, Any], clock: StepClock) -> Any:
    """TRL's SFTTrainer, packing (bfd) into rows of 2048, the same LoRA, tokens, labels and settings."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from ftcli.data.chat_template import encode_chat

    checkpointing = asked["gradient_checkpointing"]
    if asked["quantization"] == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    lora = LoraConfig(r=LORA["lora_rank"], lora_alpha=LORA["lora_alpha"], target_modules="all-linear")
    model = get_peft_model(model, lora)
    rows = [encode_chat(tokenizer, e["messages"], max_length=ROW) for e in data]
    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    mean_length = sum(r.tokens for r in rows) / len(rows)
    cuda = torch.cuda.is_available()
    config = SFTConfig(
        output_dir=str(WORK / "gpu-trl-run"),
        per_device_train_batch_size=max(1, round(BATCH * mean_length / ROW)),
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},  # as ftcli's
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=not cuda,
        bf16=cuda,
        seed=0,
        disable_tqdm=True,
        packing=True,
        packing_strategy="bfd",
        max_length=ROW,
    )

    class Counted(SFTTrainer):
        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            mask = inputs.get("attention_mask")
            read = int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())  # padding-free: all
            clock.tokens(read, int((inputs["labels"] != -100).sum()))
            return super().training_step(model, inputs, *args, **kwargs)

    class Timed(TrainerCallback):
        def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
            clock.step_done()

    trainer = Counted(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.add_callback(Timed())
    trainer.train()
    return {"precision": "bf16" if cuda else "fp32", "checkpointing": checkpointing}


def child(shape: str, side: str, quantization: str, count: int, warmup: int) -> None:
    import torch

    from ftcli.data.chat_template import encode_chat
    from ftcli.server import hardware

    model, tokenizer = build(shape, quantization)  # outside the window
    quantised = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    data = examples(count)
    checkpointing = hardware.gradient_checkpointing("auto", matmul_parameters(shape, len(tokenizer)))
    clock = StepClock(warmup)
    run = run_ftcli if side == "ftcli" else run_trl
    settings = run(model, tokenizer, data, _asked(quantization, checkpointing), clock)
    lengths = [encode_chat(tokenizer, e["messages"], max_length=ROW).tokens for e in data]
    cuda = torch.cuda.is_available()
    print(
        json.dumps(
            {
                **clock.figures(),
                **settings,
                "flops_per_token": flops_per_token(shape, lengths, len(tokenizer)),
                "reserved_gb": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
                "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                "quantised_layers": quantised,
            }
        )
    )


def measure_side(shape: str, side: str, quantization: str, count: int, warmup: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", shape, side, quantization]
    measured = measure([*command, "--examples", str(count), "--warmup", str(warmup)])
    if measured.returncode != 0:
        return {"failed": f"exit code {measured.returncode} (run {' '.join(command[1:])} to see why)"}
    result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
    return {**result, "rss_mb": measured.peak_rss_mb, "process_seconds": measured.seconds}


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="toy shapes on the CPU, the same plan (CI runs it)")
    parser.add_argument("--child", nargs=3, metavar=("SHAPE", "SIDE", "QUANTIZATION"))
    parser.add_argument("--examples", type=int, help="examples per process (default: the plan's)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the timing window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, help="seconds (default 270; the smoke: none): what wouldn't fit is left out, said so"
    )
    args = parser.parse_args()
    if args.child:
        shape, side, quantization = args.child
        child(shape, side, quantization, args.examples, args.warmup)
        return []
    WORK.mkdir(exist_ok=True)
    plan = SMOKE if args.smoke else PLAN
    warmup = 2 if args.smoke and args.warmup == 3 else args.warmup
    budget = args.budget if args.budget is not None else (float("inf") if args.smoke else 270.0)
    sides = SIDES if _has("trl") else ("ftcli",)
    started = time.monotonic()
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    left_out: list[str] = []
    for round_index in range(args.rounds):
        for shape, quantization, count, most in plan:
            if round_index >= most:
                continue
            order = sides if round_index % 2 == 0 else sides[::-1]  # alternating which side goes first
            for side in order:
                done = runs.setdefault((shape, quantization, side), [])
                if done and "failed" in done[-1]:
                    continue
                spent = max((r.get("process_seconds", 0) for r in done), default=0)
                if time.monotonic() - started + spent > budget:
                    left_out.append(f"{shape} {_method(quantization)} {side} round {round_index + 1}")
                    continue
                done.append(measure_side(shape, side, quantization, args.examples or count, warmup))
    lines = [f"machine: {about.machine()}", f"libraries: {about.versions()}"]
    if not _has("trl"):
        lines.append("TRL is not installed (pip install -e '.[bench]'): ftcli's side only")
    lines += [line for key in dict.fromkeys((s, q) for s, q, _, _ in plan) for line in _shape_lines(key, runs, sides)]
    if left_out:
        lines.append(f"left out to stay within {budget:.0f} s: " + ", ".join(left_out))
    lines.append(f"whole run: {time.monotonic() - started:.0f} s")
    return lines


def _shape_lines(
    key: tuple[str, str], runs: dict[tuple[str, str, str], list[dict[str, Any]]], sides: tuple[str, ...]
) -> list[str]:
    shape, quantization = key
    method = _method(quantization)
    lines, rates = [], {}
    for side in sides:
        results = runs.get((shape, quantization, side), [])
        failed = [r["failed"] for r in results if "failed" in r]
        good = [r for r in results if "failed" not in r]
        if failed:
            lines.append(f"{shape} {method} {side}: FAILED {failed[0]}")
            continue
        if not good:
            lines.append(f"{shape} {method} {side}: not measured (left out to stay within the time budget)")
            continue
        each = [r["window_tokens_read"] / r["window_seconds"] for r in good]
        rates[side] = rate = statistics.median(each)
        first = good[0]
        memory = f", peak reserved {max(r['reserved_gb'] for r in good):.1f} GB" if first["reserved_gb"] else ""
        peak = peak_flops(first["device"])
        mfu = f", MFU {first['flops_per_token'] * rate / peak:.0%}" if peak else ""
        lines.append(
            f"{shape} {method} {side}: {rate:,.0f} tokens read/s (median of {len(good)}: "
            + "/".join(f"{r:,.0f}" for r in each)
            + f"; window {first['window_steps']} of {first['steps']} steps){memory}{mfu}; "
            f"{first['precision']}, checkpointing {'on' if first['checkpointing'] else 'off'}"
            + (f", {first['quantised_layers']} NF4 layers; " if first["quantised_layers"] else "; ")
            + f"{first['tokens_read']:,} tokens read, {first['target_tokens']:,} target tokens in all"
        )
    if len(rates) == 2:
        totals = {runs[(shape, quantization, s)][0]["tokens_read"] for s in sides}
        same = "the same tokens on both sides" if len(totals) == 1 else "TOKENS READ DIFFER between the sides"
        lines.append(
            f"{shape} {method}: ftcli / TRL tokens/s {rates['ftcli'] / rates['trl']:.2f} (target ≥ 1.3; {same})"
        )
    return lines


def _method(quantization: str) -> str:
    return "QLoRA 4-bit" if quantization == "4bit" else "LoRA"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    output = main()
    for line in output:
        print(line)
    if output and "--smoke" not in sys.argv:
        import torch

        if torch.cuda.is_available():
            method = (__doc__ or "").split("The timing plan", 1)[1].split("    bash bench/gpu", 1)[0]
            RESULTS.write_text(
                f"# GPU benchmark results\n\nWritten by `bash bench/gpu` on {torch.cuda.get_device_name(0)}, "
                f"{time.strftime('%Y-%m-%d', time.gmtime())}.\n\n```\n" + "\n".join(output) + "\n```\n\n"
                "How it is measured (from bench/gpu_train.py): the timing plan" + method,
                encoding="utf-8",
            )
