"""Local training throughput: ftcli's LoRA trainer against the best each common recipe offers with its documented
settings, on the same tiny base, data, LoRA settings, learning rate, batch size and epochs.

- `trainer`: peft + transformers `Trainer` with length grouping (`train_sampling_strategy="group_by_length"`) and
  padding to the longest of each batch (`DataCollatorForSeq2Seq`);
- `sft`: TRL's `SFTTrainer` with packing (best-fit decreasing into rows of 2048 tokens, padding-free, positions
  restarting per example); a batch is as many rows as hold the tokens of 8 average examples, so that a step sees
  about what the others' steps see;
- `ftcli`: `train_lora` as `ftcli serve` runs it (packing on: each batch's examples share rows, no padding between);
- `ftcli-unpacked`: the same with `packing: false` (batches of similar lengths, padded), to show what packing does.

Every side is timed over the same window, from loading the base model to the saved adapter (encoding the data
included), each in its own process with its peak memory; rounds alternate the order, and each figure is the median
of the rounds. Every side trains the same assistant tokens (the same labels from the same chat template).

    .venv/bin/python bench/train_speed.py [--examples 96] [--epochs 2] [--rounds 3]
    .venv/bin/python bench/train_speed.py --model-size 0.5b   # on a GPU: a Qwen2-0.5B-shaped model, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from proctree import measure  # noqa: E402

WORK = Path(__file__).parent / "_work"
WORDS = [
    "the",
    "court",
    "held",
    "that",
    "a",
    "contract",
    "signed",
    "under",
    "duress",
    "is",
    "void",
    "and",
    "the",
    "buyer",
    "may",
    "claim",
    "damages",
    "within",
]
HYPER = {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 1.0, "lora_rank": 32, "lora_alpha": 64}
SIDES = {
    "trainer": "transformers Trainer, group_by_length",
    "sft": "TRL SFTTrainer, packing (bfd)        ",
    "ftcli-unpacked": "ftcli, packing off (sorted batches)  ",
    "ftcli": "ftcli local trainer, packing         ",
}
SFT_ROW = 2048
SEQ_LENGTH = 2048  # the longest example any side trains on


def examples(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chats with answers from a few words to a few hundred, as real instruction data varies."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        length = int(rng.lognormvariate(3.5, 0.9)) + 3
        answer = " ".join(rng.choice(WORDS) for _ in range(min(length, 400)))
        question = f"Question {index}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25)))
        out.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return out


def run_ftcli(
    base: Path, data: list[dict[str, Any]], hyper: dict[str, Any], name: str = "ftcli/tiny"
) -> dict[str, Any]:
    import torch

    from ftcli.server.protocol.hyperparameters import parse
    from ftcli.server.training import train_lora

    start = time.perf_counter()
    requested = parse("supervised", hyper)
    _, result = train_lora(base, name, data, output=WORK / "ftcli-run", seed=0, requested=requested)
    memory = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"seconds": time.perf_counter() - start, "trained_tokens": result.trained_tokens, "gpu_mb": memory}


def half_billion_base() -> Path:
    """A Qwen2-0.5B-shaped causal LM (24 layers, hidden 896, 151,936-token vocabulary) with seeded random weights
    and ftcli/tiny's offline tokenizer: the compute of a real 0.5B model, nothing downloaded."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from ftcli.data.local_bases import build_tiny_tokenizer

    directory = WORK / "qwen2-0.5b-random"
    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory, safe_serialization=True)
    build_tiny_tokenizer().save_pretrained(directory)
    return directory


def _lora(model: Any, hyper: dict[str, Any]) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=hyper["lora_rank"], lora_alpha=hyper["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def _arguments(hyper: dict[str, Any], batch_size: int, **extra: Any) -> dict[str, Any]:
    """The settings every baseline shares with ftcli's run: rate, epochs, clipping, schedule, no checkpoints."""
    import torch

    from ftcli.server.training import BASE_DEFAULTS

    return {
        "output_dir": str(WORK / "baseline-run"),
        "per_device_train_batch_size": batch_size,
        "num_train_epochs": hyper["n_epochs"],
        "learning_rate": BASE_DEFAULTS["ftcli/tiny"][0],
        "max_grad_norm": 1.0,
        "warmup_steps": 1,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "seed": 0,
        "disable_tqdm": True,
        **extra,
    }


def run_trainer(base: Path, data: list[dict[str, Any]], hyper: dict[str, Any]) -> dict[str, Any]:
    """peft + transformers Trainer with length grouping and padding to each batch's longest example."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftcli.data.chat_template import encode_chat
    from ftcli.server.training import load_base

    start = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_base(base)
    model = _lora(model, hyper)
    rows = [encode_chat(tokenizer, e["messages"], max_length=SEQ_LENGTH) for e in data]
    dataset = [{"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r.input_ids)} for r in rows]
    arguments = TrainingArguments(**_arguments(hyper, hyper["batch_size"], train_sampling_strategy="group_by_length"))
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset,  # type: ignore[arg-type]
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest"),
    )
    trainer.train()
    model.save_pretrained(WORK / "trainer-adapter")
    memory = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    trained = sum(r.trained_tokens for r in rows) * hyper["n_epochs"]
    return {"seconds": time.perf_counter() - start, "trained_tokens": trained, "gpu_mb": memory}


def run_sft(base: Path, data: list[dict[str, Any]], hyper: dict[str, Any]) -> dict[str, Any]:
    """TRL's SFTTrainer with packing (best-fit decreasing, padding-free) on the same tokens and labels."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ftcli.data.chat_template import encode_chat
    from ftcli.server.training import load_base

    start = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_base(base)
    model = _lora(model, hyper)
    rows = [encode_chat(tokenizer, e["messages"], max_length=SEQ_LENGTH) for e in data]
    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    mean_length = sum(len(r.input_ids) for r in rows) / len(rows)
    rows_per_step = max(1, round(hyper["batch_size"] * mean_length / SFT_ROW))
    config = SFTConfig(**_arguments(hyper, rows_per_step), packing=True, packing_strategy="bfd", max_length=SFT_ROW)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    model.save_pretrained(WORK / "sft-adapter")
    memory = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    trained = sum(r.trained_tokens for r in rows) * hyper["n_epochs"]
    return {"seconds": time.perf_counter() - start, "trained_tokens": trained, "gpu_mb": memory}


def child(which: str, count: int, epochs: int) -> None:
    from ftcli.server.tiny import ensure_tiny

    hyper = {**HYPER, "n_epochs": epochs}
    if which == "0.5b":
        print(json.dumps(run_ftcli(half_billion_base(), examples(count), {"n_epochs": epochs}, name="bench/0.5b")))
        return
    base = ensure_tiny(WORK / "tiny-base")
    if which == "ftcli-unpacked":
        result = run_ftcli(base, examples(count), {**hyper, "packing": False})
    else:
        result = {"ftcli": run_ftcli, "trainer": run_trainer, "sft": run_sft}[which](base, examples(count), hyper)
    print(json.dumps(result))


def half_billion(count: int, epochs: int) -> list[str]:
    command = [sys.executable, __file__, "--child", "0.5b", "--examples", str(count), "--epochs", str(epochs)]
    measured = measure(command)
    if measured.returncode != 0:
        raise SystemExit("0.5b run failed")
    result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
    rate = result["trained_tokens"] / result["seconds"]
    gpu = f", peak GPU memory {result['gpu_mb']:,.0f} MB" if result.get("gpu_mb") else " (no GPU: CPU figures)"
    return [
        f"Qwen2-0.5B-shaped model, random weights: {count} chats, {epochs} epochs",
        f"  ftcli local trainer: {result['seconds']:.2f} s, {rate:,.0f} trained tokens/s{gpu},"
        f" peak RSS {measured.peak_rss_mb:.0f} MB",
    ]


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated: " + ", ".join(SIDES))
    parser.add_argument("--child", choices=[*SIDES, "0.5b"])
    parser.add_argument("--model-size", choices=["tiny", "0.5b"], default="tiny")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.examples, args.epochs)
        return []
    WORK.mkdir(exist_ok=True)
    if args.model_size == "0.5b":
        return half_billion(args.examples, args.epochs)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ftcli.server.tiny import ensure_tiny

    ensure_tiny(WORK / "tiny-base")  # built once, outside every timing
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for round_index in range(args.rounds):
        for side in sides[round_index % len(sides) :] + sides[: round_index % len(sides)]:  # alternating order
            command = [sys.executable, __file__, "--child", side, "--examples", str(args.examples)]
            measured = measure([*command, "--epochs", str(args.epochs)])
            if measured.returncode != 0:
                raise SystemExit(f"{side} run failed: see {' '.join(command[1:])} --epochs {args.epochs}")
            result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
            runs[side].append({**result, "rss_mb": measured.peak_rss_mb})
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    lines.append(
        f"data: {args.examples} chats (answers of 3–400 words), {args.epochs} epochs, batch 8, LoRA r32 α64; "
        f"medians of {args.rounds} alternating rounds, each from loading the model to the saved adapter"
    )
    rates = {}
    for side in sides:
        seconds = statistics.median(r["seconds"] for r in runs[side])
        tokens = runs[side][0]["trained_tokens"]
        rates[side] = tokens / seconds
        every = "/".join(f"{r['seconds']:.1f}" for r in runs[side])
        gpu = f", peak GPU {max(r['gpu_mb'] for r in runs[side]):,.0f} MB" if runs[side][0].get("gpu_mb") else ""
        lines.append(
            f"  {SIDES[side]}: {seconds:6.2f} s ({every}), {tokens:,} trained tokens, {rates[side]:,.0f} tokens/s, "
            f"peak RSS {max(r['rss_mb'] for r in runs[side]):.0f} MB{gpu}"
        )
    if "ftcli" in rates:
        for baseline in ("trainer", "sft", "ftcli-unpacked"):
            if baseline in rates:
                lines.append(f"  throughput ratio ftcli / {baseline}: {rates['ftcli'] / rates[baseline]:.2f}")
        best = [rates[b] for b in ("trainer", "sft") if b in rates]
        if best:
            lines.append(f"  against the best baseline: {rates['ftcli'] / max(best):.2f} (target ≥ 1.3)")
    return lines


if __name__ == "__main__":
    for line in main():
        print(line)
