"""Reinforcement fine-tuning speed: ftcli's GRPO loop (server/grpo.py, what `ftcli serve` runs for an RFT job)
against TRL's `GRPOTrainer`, on the same base, prompts, grader, LoRA and GRPO settings, step for step.

The task is a toy one the base already scores on now and then: a prompt asks for a word, and the reward is OpenAI's
`string_check` grader `like "a"` (1 when the answer has an "a" in it), graded by ftcli's grader engine on both sides.
Each step takes 4 prompts and samples 4 answers to each (16 answers of at most `--tokens` tokens), then one
optimizer step: token-level GRPO loss (TRL's `dapo`, ftcli's), KL coefficient 0.04 against the base with the
adapter off, clip 0.2, one update per batch, temperature 1 with no top-k or top-p, LoRA rank and alpha of ftcli's
defaults for the base on all linear layers, the base's learning rate, AdamW with weight decay 0.01, gradient clipping
at 1.0, gradient checkpointing off, fp32 (`--precision bf16` to compare in bf16).

Each side runs in a process of its own (its own peak memory, summed over its process tree); the time per step is
the wall time from the end of the first step to the end of the last over the steps between (loading and the
first step's warm-up excluded on both sides; both load the base with ftcli's `load_base`);
rounds alternate the order of the sides and each figure is the median of the rounds.

    .venv/bin/python bench/rft_speed.py [--model tiny|smollm2] [--steps 6] [--tokens 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import about  # noqa: E402
from proctree import measure  # noqa: E402

WORK = Path(__file__).parent / "_work"
MODELS = {"tiny": "ftcli/tiny", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
SIDES = {"ftcli": "ftcli GRPO (server/grpo.py)", "trl": "TRL GRPOTrainer         "}
PROMPTS_PER_STEP = 4
SAMPLES_PER_PROMPT = 4
KL = 0.04
GRADER = {"type": "string_check", "name": "has an a", "input": "{{sample.output_text}}", "reference": "a",
          "operation": "like"}  # fmt: skip


def prompts(steps: int) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": f"Write a word, please ({n})."}], "n": n}
        for n in range(steps * PROMPTS_PER_STEP)
    ]


def lora(name: str) -> tuple[float, int, int]:
    from ftcli.server.training import BASE_DEFAULTS, DEFAULT_BASE

    return BASE_DEFAULTS.get(name, DEFAULT_BASE)


def run_ftcli(base: Path, name: str, data: list[dict[str, Any]], tokens: int, precision: str) -> dict[str, Any]:
    from ftcli.data.graders.spec import parse_grader
    from ftcli.server.grpo import Grading, train_grpo
    from ftcli.server.protocol.hyperparameters import ReinforcementHyperparameters, parse
    from ftcli.server.reporting import Silent, StepMetrics

    rewards: list[float] = []
    ends: list[float] = []

    class Timed(Silent):
        def step(self, metrics: StepMetrics) -> None:
            ends.append(time.perf_counter())
            if metrics.train_rewards is not None:
                rewards.append(metrics.train_rewards.mean)

    requested = parse(
        "reinforcement",
        {"n_epochs": 1, "batch_size": PROMPTS_PER_STEP, "samples_per_prompt": SAMPLES_PER_PROMPT,
         "max_new_tokens": tokens, "kl_coefficient": KL, "precision": precision, "temperature": 1.0},
    )  # fmt: skip
    assert isinstance(requested, ReinforcementHyperparameters)
    _, result = train_grpo(
        base, name, data, grading=Grading(parse_grader(GRADER)), output=WORK / "rft-ftcli-run", seed=0,
        requested=requested, reporter=Timed(),
    )  # fmt: skip
    return {"step_ends": ends, "steps": result.steps, "rewards": rewards}


def run_trl(base: Path, name: str, data: list[dict[str, Any]], tokens: int, precision: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ftcli.data.graders.engine import Sample, grade_batch
    from ftcli.data.graders.spec import parse_grader
    from ftcli.server.training import load_base

    grader = parse_grader(GRADER)
    rate, rank, alpha = lora(name)
    model, tokenizer = load_base(base, bf16=precision == "bf16")
    tokenizer.padding_side = "left"

    def has_an_a(completions: list[Any], n: list[int], **_: Any) -> list[float]:
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        items = [{"n": value} for value in n]
        return [r.reward for r in grade_batch(grader, items, [Sample.of_text(t) for t in texts])]

    config = GRPOConfig(
        output_dir=str(WORK / "rft-trl-run"),
        per_device_train_batch_size=PROMPTS_PER_STEP * SAMPLES_PER_PROMPT,
        num_generations=SAMPLES_PER_PROMPT,
        max_completion_length=tokens,
        num_train_epochs=1,
        learning_rate=rate,
        weight_decay=0.01,
        max_grad_norm=1.0,
        warmup_steps=1,
        beta=KL,
        epsilon=0.2,
        loss_type="dapo",
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        gradient_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        seed=0,
        disable_tqdm=True,
        shuffle_dataset=True,
    )
    rows = [{"prompt": example["messages"], "n": example["n"]} for example in data]
    ends: list[float] = []

    class Timed(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[has_an_a],
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[Timed()],
    )
    trainer.train()
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    return {"step_ends": ends, "steps": trainer.state.global_step, "rewards": rewards}


def per_step(run: dict[str, Any]) -> float:
    """Seconds per step after the first (each side's first step also warms up its kernels and caches)."""
    ends = run["step_ends"]
    return float((ends[-1] - ends[0]) / max(1, len(ends) - 1))


def child(side: str, base: Path, name: str, steps: int, tokens: int, precision: str) -> None:
    data = prompts(steps)
    result = (run_ftcli if side == "ftcli" else run_trl)(base, name, data, tokens, precision)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="tiny")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per answer")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--sides", default="ftcli,trl")
    parser.add_argument("--child", choices=list(SIDES))
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    name = MODELS[args.model]
    if args.child:
        child(args.child, args.base, name, args.steps, args.tokens, args.precision)
        return
    from ftcli.server.bases import resolve_base

    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("FTCLI_BASES_DIR", None)
    base = resolve_base(name, WORK)  # built or converted once, outside every timing
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    load_before = about.load()
    for round_index in range(args.rounds):
        for side in sides[round_index % len(sides) :] + sides[: round_index % len(sides)]:
            command = [sys.executable, __file__, "--child", side, "--model", args.model, "--base", str(base)]
            command += ["--steps", str(args.steps), "--tokens", str(args.tokens), "--precision", args.precision]
            measured = measure(command)
            if measured.returncode != 0:
                print(f"{side} failed (exit {measured.returncode}): {' '.join(command[1:])}", file=sys.stderr)
                continue
            result = json.loads(measured.stdout.decode().strip().splitlines()[-1])
            runs[side].append({**result, "rss_mb": measured.peak_rss_mb})
    print(f"# RFT speed: {name}, {args.steps} steps of {PROMPTS_PER_STEP} prompts × {SAMPLES_PER_PROMPT} answers of "
          f"≤{args.tokens} tokens, {args.precision}, {args.rounds} rounds (median)")  # fmt: skip
    print(f"# {about.machine()}; load before: {load_before}, after: {about.load()}")
    print(f"# {about.versions()}")
    for side in sides:
        if not runs[side]:
            print(f"{SIDES[side]}  failed")
            continue
        seconds = statistics.median(per_step(r) for r in runs[side])
        peak = max(r["rss_mb"] for r in runs[side])
        rewards = runs[side][0]["rewards"]
        print(
            f"{SIDES[side]}  {seconds:6.2f} s/step  peak RSS {peak:6.0f} MB  steps {runs[side][0]['steps']}  "
            f"mean reward per step {[round(r, 2) for r in rewards]}"
        )
    if all(runs[side] for side in ("ftcli", "trl") if side in sides) and {"ftcli", "trl"} <= set(sides):
        ftcli = statistics.median(per_step(r) for r in runs["ftcli"])
        trl = statistics.median(per_step(r) for r in runs["trl"])
        print(f"time per step, ftcli / TRL: {ftcli / trl:.2f}")


if __name__ == "__main__":
    main()
