"""Training real model shapes on one GPU (issue 14): ftcli's trainer against TRL's `SFTTrainer` with packing, on
random-weight models of Qwen2.5-0.5B, Qwen2.5-1.5B and Llama-3.1-8B shapes (configs written here: nothing downloads),
LoRA in bf16 and QLoRA 4-bit, rows of 2048 tokens, packed. Each side runs in its own process (its own peak memory);
trained tokens per second and peak GPU memory are measured in the same run, and the 0.5B LoRA run's model FLOPs
utilisation is estimated (6 × parameters × tokens processed per second against the GPU's bf16 peak).

    bash bench/gpu                 # on a CUDA machine: every shape, writes bench/RESULTS-gpu.md (under 8 minutes)
    python bench/gpu_train.py --smoke   # anywhere: a tiny shape on the CPU, a few steps (CI runs it; no timing)

Targets: ≥ 1.3× TRL's tokens/s at equal or lower peak memory; Llama-3.1-8B QLoRA ≤ 20 GB peak; 0.5B LoRA ≥ 40 % MFU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from proctree import measure  # noqa: E402
from train_speed import WORK, _lora, examples  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS-gpu.md"
ROW = 2048
H200_BF16_FLOPS = 989e12  # dense bf16 peak of an H200 (SXM), for the utilisation estimate
# name: (architecture, hidden, intermediate, layers, heads, kv heads, vocabulary, tied embeddings)
SHAPES: dict[str, tuple[str, int, int, int, int, int, int, bool]] = {
    "tiny": ("qwen2", 64, 128, 2, 4, 2, 0, True),  # vocabulary 0: the tokenizer's own (a CPU smoke run)
    "qwen2.5-0.5b": ("qwen2", 896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": ("qwen2", 1536, 8960, 28, 12, 2, 151936, True),
    "llama-3.1-8b": ("llama", 4096, 14336, 32, 32, 8, 128256, False),
}
# (shape, side, quantization): the GPU plan, in the order it runs
PLAN = [
    ("qwen2.5-0.5b", "ftcli", "none"),
    ("qwen2.5-0.5b", "trl", "none"),
    ("qwen2.5-1.5b", "ftcli", "none"),
    ("qwen2.5-1.5b", "trl", "none"),
    ("llama-3.1-8b", "ftcli", "4bit"),
    ("llama-3.1-8b", "trl", "4bit"),
]
LORA = {"lora_rank": 16, "lora_alpha": 32}


def random_base(shape: str) -> Path:
    """A causal LM of the shape's real dimensions with seeded random weights (bf16 on disk), and ftcli/tiny's
    offline tokenizer (its ids fall inside every vocabulary here)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from ftcli.data.local_bases import build_tiny_tokenizer

    directory = WORK / f"random-{shape}"
    if (directory / "config.json").exists():
        return directory
    kind, hidden, intermediate, layers, heads, kv_heads, vocab, tied = SHAPES[shape]
    tokenizer = build_tiny_tokenizer()
    vocab = vocab or len(tokenizer)
    config_class = Qwen2Config if kind == "qwen2" else LlamaConfig
    config = config_class(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tied,
        max_position_embeddings=ROW * 2,
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def run_ftcli(base: Path, data: list[dict[str, Any]], quantization: str, epochs: int) -> dict[str, Any]:
    from ftcli.server.protocol.hyperparameters import parse
    from ftcli.server.training import train_lora

    start = time.perf_counter()
    asked = {"n_epochs": epochs, "batch_size": 8, "quantization": quantization, "max_seq_length": ROW, **LORA}
    requested = parse("supervised", asked)
    hyper, result = train_lora(base, "bench", data, output=WORK / "gpu-ftcli-run", seed=0, requested=requested)
    return _figures(
        start, result.trained_tokens, {"precision": hyper.precision, "checkpointing": hyper.gradient_checkpointing}
    )


def run_trl(base: Path, data: list[dict[str, Any]], quantization: str, epochs: int) -> dict[str, Any]:
    """TRL's SFTTrainer, packing (bfd) into rows of 2048, the same LoRA, tokens and labels."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ftcli.data.chat_template import encode_chat
    from ftcli.server.training import load_base

    start = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_base(base, four_bit=quantization == "4bit")
    if quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    model = _lora(model, LORA)
    rows = [encode_chat(tokenizer, e["messages"], max_length=ROW) for e in data]
    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    mean_length = sum(len(r.input_ids) for r in rows) / len(rows)
    config = SFTConfig(
        output_dir=str(WORK / "gpu-trl-run"),
        per_device_train_batch_size=max(1, round(8 * mean_length / ROW)),
        num_train_epochs=epochs,
        learning_rate=2e-4,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        disable_tqdm=True,
        packing=True,
        packing_strategy="bfd",
        max_length=ROW,
    )
    SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer).train()
    return _figures(start, sum(r.trained_tokens for r in rows) * epochs, {})


def _figures(start: float, trained: int, extra: dict[str, Any]) -> dict[str, Any]:
    import torch

    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"seconds": time.perf_counter() - start, "trained_tokens": trained, "gpu_gb": memory, **extra}


def child(shape: str, side: str, quantization: str, count: int, epochs: int) -> None:
    data = examples(count)
    base = random_base(shape)
    run = run_ftcli if side == "ftcli" else run_trl
    print(json.dumps(run(base, data, quantization, epochs)))


def measure_side(shape: str, side: str, quantization: str, count: int, epochs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", shape, side, quantization, "--examples", str(count)]
    measured = measure([*command, "--epochs", str(epochs)])
    if measured.returncode != 0:
        return {"failed": f"exit code {measured.returncode} (run {' '.join(command[1:])} to see why)"}
    return {**json.loads(measured.stdout.decode().strip().splitlines()[-1]), "rss_mb": measured.peak_rss_mb}


def parameters(shape: str) -> int:
    _, hidden, intermediate, layers, heads, kv_heads, vocab, tied = SHAPES[shape]
    kv = hidden // heads * kv_heads
    per_layer = hidden * (hidden + 2 * kv + hidden) + 3 * hidden * intermediate
    return layers * per_layer + vocab * hidden * (1 if tied else 2)


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a tiny shape on the CPU, a few steps (no timing)")
    parser.add_argument("--child", nargs=3, metavar=("SHAPE", "SIDE", "QUANTIZATION"))
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        shape, side, quantization = args.child
        child(shape, side, quantization, args.examples, args.epochs)
        return []
    WORK.mkdir(exist_ok=True)
    plan = [("tiny", "ftcli", "none"), ("tiny", "trl", "none")] if args.smoke else PLAN
    count, epochs = (8, 1) if args.smoke else (args.examples, args.epochs)
    lines = []
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for shape, side, quantization in plan:
        if side == "trl" and not _has("trl"):
            lines.append(f"{shape} {side}: skipped (TRL is not installed: pip install -e '.[bench]')")
            continue
        result = runs[(shape, side)] = measure_side(shape, side, quantization, count, epochs)
        if "failed" in result:
            lines.append(f"{shape} {side} {quantization}: FAILED {result['failed']}")
            continue
        rate = result["trained_tokens"] / result["seconds"]
        gpu = f", peak GPU {result['gpu_gb']:.1f} GB" if result.get("gpu_gb") else ""
        lines.append(
            f"{shape} {side} ({'QLoRA 4-bit' if quantization == '4bit' else 'LoRA'}): {result['seconds']:.1f} s, "
            f"{rate:,.0f} trained tokens/s{gpu}, peak RSS {result['rss_mb']:.0f} MB"
        )
        result["rate"] = rate
    for shape in dict.fromkeys(s for s, _, _ in plan):
        ours, theirs = runs.get((shape, "ftcli"), {}), runs.get((shape, "trl"), {})
        if "rate" in ours and "rate" in theirs:
            lines.append(f"{shape}: ftcli / TRL tokens/s {ours['rate'] / theirs['rate']:.2f} (target ≥ 1.3)")
    half = runs.get(("qwen2.5-0.5b", "ftcli"), {})
    if "rate" in half and half.get("gpu_gb"):
        utilisation = 6 * parameters("qwen2.5-0.5b") * half["rate"] / H200_BF16_FLOPS
        lines.append(
            f"qwen2.5-0.5b LoRA model FLOPs utilisation ≈ {utilisation:.0%} of bf16 peak "
            "(trained tokens; target ≥ 40 %)"
        )
    return lines


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
            RESULTS.write_text(
                "# GPU benchmark results\n\nWritten by `bash bench/gpu` on "
                f"{torch.cuda.get_device_name(0)}.\n\n```\n" + "\n".join(output) + "\n```\n",
                encoding="utf-8",
            )
