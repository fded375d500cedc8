"""bench/gpu (issues 14, 22): the script that measures real model shapes on a GPU keeps working where CI has no GPU,
and measures what it says. Its CPU smoke runs the GPU plan at toy size with both sides (TRL is installed by
scripts/test): at least three alternating rounds, a steady-state window after the warm-up steps, the same tokens
counted on both sides, QLoRA's 4-bit path through bitsandbytes' CPU backend. The MFU formula (4N plus attention, not
6N) and the peak looked up by the card's name are checked on their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO, bench_module

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]


@pytest.fixture(scope="module")
def gpu_train() -> Any:
    yield from bench_module("gpu_train")


def test_lora_model_flops_are_4n_plus_causal_attention(gpu_train: Any) -> None:
    # Qwen2.5-0.5B: 494,032,768 parameters in all, tied embeddings; the matrices a token is multiplied by are all
    # of them but the norms and biases (the LM head is the embedding matrix, multiplied once)
    n = gpu_train.matmul_parameters("qwen2.5-0.5b")
    assert 0.99 * 494_032_768 < n < 494_032_768
    layers, hidden = 24, 896
    # one example of 3 tokens: attention pairs 1 + 2 + 3 = 6, each 4·d FLOPs forward, ×3 with the backward
    per_token = gpu_train.flops_per_token("qwen2.5-0.5b", [3])
    assert per_token == pytest.approx(4 * n + 3 * 4 * hidden * layers * 6 / 3)
    # frozen weights: no weight gradients, so 4N (2N forward, 2N backward through the activations), never 6N
    assert per_token < 4.1 * n
    # examples attend only to themselves: two of 3 tokens cost per token what one does
    assert gpu_train.flops_per_token("qwen2.5-0.5b", [3, 3]) == pytest.approx(per_token)


def test_the_peak_is_the_present_cards(gpu_train: Any) -> None:
    assert gpu_train.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_train.peak_flops("NVIDIA H100 PCIe") == 756e12  # the more specific name wins
    assert gpu_train.peak_flops("NVIDIA H200") == 989e12
    assert gpu_train.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_train.peak_flops("cpu") is None and gpu_train.peak_flops("Some Future GPU") is None


def test_the_window_starts_after_the_warm_up_steps(gpu_train: Any) -> None:
    clock = gpu_train.StepClock(warmup=2)
    for end, read in [(10.0, 100), (11.0, 100), (12.5, 300), (13.0, 200), (15.0, 400)]:
        clock.tokens(read, read // 2)
        clock.ends.append(end)
    figures = clock.figures()
    assert figures["window_steps"] == 3 and figures["window_seconds"] == 15.0 - 11.0
    assert figures["window_tokens_read"] == 300 + 200 + 400 and figures["tokens_read"] == 1100
    clock.tokens(1, 1)  # a step counted but never timed
    with pytest.raises(SystemExit, match="missed a step"):
        clock.figures()


def test_a_step_of_several_passes_counts_their_tokens_once(gpu_train: Any) -> None:
    clock = gpu_train.StepClock(warmup=1)
    for end, passes in [(10.0, [100]), (11.0, [60, 40, 20]), (12.0, [50, 50])]:
        for read in passes:  # a CPU's batch in passes of at most 1,024 tokens: one step
            clock.tokens(read, read // 2)
        clock.ends.append(end)
    figures = clock.figures()
    assert figures["steps"] == 3 and figures["tokens_read"] == 320 and figures["target_tokens"] == 160
    assert figures["window_tokens_read"] == 220 and figures["window_seconds"] == 2.0


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_plan_at_toy_size_on_the_cpu() -> None:
    pytest.importorskip("trl", reason="TRL (the bench extra) is not installed: scripts/test installs it")
    pytest.importorskip(
        "bitsandbytes", reason="bitsandbytes (the gpu extra) is not installed: scripts/test installs it"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_train.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FAILED" not in out and "not measured" not in out and "left out" not in out, out
    for method, rounds, quantised in (("LoRA", 3, False), ("QLoRA 4-bit", 1, True)):
        for side in ("ftcli", "trl"):
            line = next((x for x in out.splitlines() if x.startswith(f"tiny {method} {side}:")), None)
            assert line is not None, out
            assert f"median of {rounds}:" in line, line
            window = re.search(r"window (\d+) of (\d+) steps", line)
            assert window is not None and int(window[1]) == int(window[2]) - 2, line  # two warm-up steps left out
            assert ("NF4 layers" in line) == quantised, line
        assert f"tiny {method}: ftcli / TRL tokens/s" in out and "the same tokens on both sides" in out
