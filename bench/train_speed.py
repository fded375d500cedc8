"""Local training throughput: ftcli's LoRA trainer vs a plain transformers `Trainer` LoRA run on the same tiny base,
data and hyperparameters, measured in the same invocation (each in its own process, with its peak memory).

Target (issue 4): trained tokens/s of ftcli ≥ 1.3× the plain Trainer's. Both train on the same assistant tokens (the
same labels from the same chat template); the plain run batches in dataset order and pads to each batch's longest
example (transformers' defaults), ftcli groups examples of similar length.

    .venv/bin/python bench/train_speed.py [--examples 96] [--epochs 2]
    .venv/bin/python bench/train_speed.py --model-size 0.5b   # on a GPU: a Qwen2-0.5B-shaped model, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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

    from ftcli.server.training import train_lora

    start = time.perf_counter()
    _, result = train_lora(base, name, data, output=WORK / "ftcli-run", seed=0, requested=hyper)
    memory = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"seconds": time.perf_counter() - start, "trained_tokens": result.trained_tokens, "gpu_mb": memory}


def half_billion_base() -> Path:
    """A Qwen2-0.5B-shaped causal LM (24 layers, hidden 896, 151,936-token vocabulary) with seeded random weights
    and ftcli/tiny's offline tokenizer: the compute of a real 0.5B model, nothing downloaded."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from ftcli.server.tiny import build_tokenizer

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
    build_tokenizer().save_pretrained(directory)
    return directory


def run_trainer(base: Path, data: list[dict[str, Any]], hyper: dict[str, Any]) -> dict[str, Any]:
    """The plain recipe: peft + transformers Trainer + DataCollatorForSeq2Seq, default batching."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftcli.server.chat_tokens import encode_chat
    from ftcli.server.training import BASE_DEFAULTS, MAX_LENGTH, load_base

    torch.manual_seed(0)
    model, tokenizer = load_base(base)
    model = get_peft_model(
        model,
        LoraConfig(
            r=hyper["lora_rank"], lora_alpha=hyper["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    rows = [encode_chat(tokenizer, e["messages"], max_length=MAX_LENGTH) for e in data]
    dataset = [{"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r.input_ids)} for r in rows]
    arguments = TrainingArguments(
        output_dir=str(WORK / "trainer-run"),
        per_device_train_batch_size=hyper["batch_size"],
        num_train_epochs=hyper["n_epochs"],
        learning_rate=BASE_DEFAULTS["ftcli/tiny"][0],
        max_grad_norm=1.0,
        warmup_steps=1,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset,  # type: ignore[arg-type]
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "trained_tokens": sum(r.trained_tokens for r in rows) * hyper["n_epochs"]}


def child(which: str, count: int, epochs: int) -> None:
    from ftcli.server.tiny import ensure_tiny

    hyper = {**HYPER, "n_epochs": epochs}
    if which == "0.5b":
        print(json.dumps(run_ftcli(half_billion_base(), examples(count), {"n_epochs": epochs}, name="bench/0.5b")))
        return
    base = ensure_tiny(WORK / "tiny-base")
    runner = run_ftcli if which == "ftcli" else run_trainer
    print(json.dumps(runner(base, examples(count), hyper)))


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
    parser.add_argument("--child", choices=["ftcli", "trainer", "0.5b"])
    parser.add_argument("--model-size", choices=["tiny", "0.5b"], default="tiny")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.examples, args.epochs)
        return []
    if args.model_size == "0.5b":
        WORK.mkdir(exist_ok=True)
        return half_billion(args.examples, args.epochs)
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ftcli.server.tiny import ensure_tiny

    ensure_tiny(WORK / "tiny-base")  # built once, outside both timings
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    lines.append(f"data: {args.examples} chats (answers of 3–400 words), {args.epochs} epochs, batch 8, LoRA r32 α64")
    figures = {}
    for which in ("trainer", "ftcli"):
        command = [sys.executable, __file__, "--child", which, "--examples", str(args.examples)]
        measured = measure([*command, "--epochs", str(args.epochs)])
        if measured.returncode != 0:
            raise SystemExit(f"{which} run failed")
        result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
        rate = result["trained_tokens"] / result["seconds"]
        figures[which] = rate
        label = "plain transformers Trainer" if which == "trainer" else "ftcli local trainer      "
        lines.append(
            f"  {label}: {result['seconds']:.2f} s, {result['trained_tokens']:,} trained tokens, {rate:,.0f} tokens/s,"
            f" peak RSS {measured.peak_rss_mb:.0f} MB"
        )
    lines.append(f"  throughput ratio ftcli/Trainer: {figures['ftcli'] / figures['trainer']:.2f} (target ≥ 1.3)")
    return lines


if __name__ == "__main__":
    for line in main():
        print(line)
