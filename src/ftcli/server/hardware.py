"""What a training job asks of the machine, decided in one place: the numeric precision (bf16 where the GPU or the CPU
computes in it, else fp16 with loss scaling on a GPU, fp32 on a CPU; or the one the job asks for, where the machine
computes in it), gradient
checkpointing (on for bases over 1B parameters), QLoRA's 4-bit loading (bitsandbytes: its CUDA kernels on a GPU, its
CPU backend elsewhere; refused clearly without it), the longest sequence trained, and what to tell the user when the
GPU runs out of memory. The decisions are plain functions of what the machine has, so CPU tests can check them for
any GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftcli.data.local_bases import default_max_seq_length

Precision = Literal["bf16", "fp16", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp16", "fp32")
Quantization = Literal["none", "4bit"]
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "4bit")
CHECKPOINTING_ABOVE = 1_000_000_000  # parameters: above this, activations are recomputed instead of kept
# A training step's activations (what autograd keeps for the backward) on a CPU: a batch bigger than this is trained
# in several forward passes whose gradients add up (server/objectives.passes), so memory doesn't grow with batch size
CPU_ACTIVATIONS_BYTES = 384 << 20
GPU_ACTIVATIONS_SHARE = 0.25  # on a GPU: this share of its memory
# A CPU multiplies at full speed from a few hundred rows a matrix: a pass of more tokens is no faster, and it holds
# activations (and glibc's fragments of them) for all of them. Measured on the toy base (ftcli/tiny, batches of ~3.7k
# tokens): passes of 1k tokens trained in 10.5 s at a 0.59 GB peak, whole batches in 12.6 s at 0.78 GB
CPU_TOKENS_PER_PASS = 1024
# Imported by PEFT and Transformers whenever it is installed, used only to quantize (QLoRA)
QUANTIZATION_MODULES = ("bitsandbytes",)
GPU_EXTRA = "pip install 'ftcli[gpu]' (bitsandbytes: CUDA kernels on a GPU, its CPU backend elsewhere)"


class UnsupportedSetting(ValueError):
    """A job setting this machine can't honour; the message says what would."""


@dataclass(frozen=True, slots=True)
class Machine:
    cuda: bool
    bf16: bool  # computes in bfloat16 natively: a GPU of Ampere or later, or a CPU with AVX512-BF16 or AMX
    bitsandbytes: bool
    gpu_bytes: int | None = None  # the (first) GPU's memory

    @classmethod
    def this_one(cls) -> Machine:
        import torch

        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            bf16=torch.cuda.is_bf16_supported() if cuda else cpu_computes_bf16(),
            bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
            gpu_bytes=int(torch.cuda.get_device_properties(0).total_memory) if cuda else None,
        )


def precision(setting: Any, machine: Machine) -> Precision:
    """Mixed precision for Accelerate. `auto` (or unset): bf16 where the machine computes in it (twice fp32's speed on
    a CPU with AVX512-BF16, half its activation memory), else fp16 (Accelerate scales the loss) on older GPUs and fp32
    on other CPUs; a precision asked for must be one the machine computes in."""
    if setting in (None, "auto"):
        if machine.bf16:
            return "bf16"
        return "fp16" if machine.cuda else "fp32"
    if setting not in PRECISIONS:
        raise UnsupportedSetting(f"precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    if setting == "fp16" and not machine.cuda:
        raise UnsupportedSetting("precision 'fp16' needs a CUDA GPU, and this server has none: use 'fp32' or 'auto'")
    if setting == "bf16" and not machine.bf16:
        raise UnsupportedSetting(
            "precision 'bf16' needs a GPU or CPU that computes in bfloat16 (an Ampere or later GPU, a CPU with "
            "AVX512-BF16 or AMX), and this server has neither: use 'auto'"
        )
    chosen: Precision = setting
    return chosen


def cpu_computes_bf16(cpuinfo: str | None = None) -> bool:
    """The CPU multiplies bfloat16 natively (x86's AVX512-BF16 or AMX): where it doesn't, bf16 is emulated and slower
    than fp32. Read from the kernel's CPU flags (`cpuinfo`: /proc/cpuinfo's text; Linux); elsewhere fp32 stays."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def gradient_checkpointing(setting: Any, parameters: int) -> bool:
    """`auto` (or unset): on for bases over a billion parameters, where activations dominate memory."""
    if setting in (None, "auto"):
        return parameters > CHECKPOINTING_ABOVE
    return bool(setting)


def tokens_per_pass(config: Any, *, element_bytes: int, checkpointing: bool, gpu_bytes: int | None) -> int | None:
    """How many tokens one forward pass may hold so its activations stay within the machine's budget, and on a CPU
    at most CPU_TOKENS_PER_PASS (None: no limit, on a GPU for a model whose shape isn't known). A decoder layer keeps
    about 12 × hidden + 4 × intermediate values a token (inputs of the norms, projections and LoRA, the attention's
    q/k/v/output, the MLP's gate, up and product: 0.78 MB a token measured on SmolLM2-135M in bf16, 0.80 estimated);
    checkpointed, only each layer's input is kept, plus one layer's while it is recomputed."""
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(hidden, int) or not isinstance(layers, int):
        return None if gpu_bytes is not None else CPU_TOKENS_PER_PASS
    intermediate = getattr(config, "intermediate_size", None)
    per_layer = 12 * hidden + 4 * (intermediate if isinstance(intermediate, int) else 4 * hidden)
    per_token = (layers * hidden + per_layer if checkpointing else layers * per_layer) * element_bytes
    if gpu_bytes is not None:
        return max(1, int(gpu_bytes * GPU_ACTIVATIONS_SHARE) // per_token)
    return max(1, min(CPU_TOKENS_PER_PASS, CPU_ACTIVATIONS_BYTES // per_token))


def quantization(setting: Any, machine: Machine) -> Quantization:
    """The job's `quantization`, checked against the machine: 4-bit needs bitsandbytes, whose NF4 layers train on a
    CUDA GPU and, with its CPU backend (0.50 tested), on a CPU: slowly, but in a quarter of the base's memory."""
    value = _quantization_asked(setting)
    if value not in QUANTIZATIONS:
        raise UnsupportedSetting(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {setting!r}")
    if value == "4bit" and not machine.bitsandbytes:
        raise UnsupportedSetting(f"quantization '4bit' (QLoRA) needs bitsandbytes: {GPU_EXTRA}")
    chosen: Quantization = value
    return chosen


def _quantization_asked(setting: Any) -> Any:
    return "none" if setting in (None, "auto", False) else setting


def leave_out_quantization(setting: Any, base: Path) -> bool:
    """In a job's own process, before anything imports PEFT or Transformers: a job that doesn't quantize a base that
    isn't quantized already (`base`: its folder) runs without bitsandbytes, which they import whenever it is
    installed (measured: 45 MB and 1.3 s of every job's start, with the compiler modules its CPU backend brings).
    They ask Python where it is (`find_spec`), which answers None for a module set to None; they remember the answer
    for the process's life, so this is for a process that trains one job, and refused once either is imported.
    True where it was left out."""
    if _quantization_asked(setting) == "4bit" or saved_quantized(base):
        return False
    if any(name in sys.modules for name in ("peft", "transformers", "accelerate", *QUANTIZATION_MODULES)):
        return False
    for name in QUANTIZATION_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's own "not importable" marker
    return True


def saved_quantized(base: Path) -> bool:
    """The base was saved quantized (its config names how, e.g. a `-bnb-4bit` checkpoint): Transformers loads it
    through that library, whatever the job asks. A config that can't be read counts as quantized (nothing left out)."""
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(config, dict) or config.get("quantization_config") is not None


def four_bit_config() -> Any:
    """QLoRA's loading: NF4 weights with double quantisation, computing in bf16 (bitsandbytes' CPU kernels too)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def four_bit_device() -> int | str:
    """Where a 4-bit base is loaded (bitsandbytes quantises as it places the weights): the first GPU, else the CPU."""
    import torch

    return 0 if torch.cuda.is_available() else "cpu"


def max_seq_length(setting: Any, model_context: int | None) -> int:
    """The job's `max_seq_length`, else the model's context capped at 4096 (longer examples are truncated)."""
    if setting not in (None, "auto"):
        return int(setting)
    return default_max_seq_length(model_context)


def out_of_memory(batch_size: Any, seq_length: Any, quantized: bool, checkpointing: bool) -> str:
    """What to lower when a job ran out of GPU memory, from the settings it asked for (None: left to ftcli)."""

    def now(name: str, value: Any) -> str:
        return f"{name} (now {value})" if value not in (None, "auto") else name

    advice = [now("batch_size", batch_size), now("max_seq_length", seq_length)]
    more = ([] if checkpointing else ["turn on gradient_checkpointing"]) + (
        [] if quantized else ["use quantization '4bit' (QLoRA)"]
    )
    return f"the GPU ran out of memory: lower {' or '.join(advice)}" + (f", or {' or '.join(more)}" if more else "")


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


ServingEngine = Literal["builtin", "vllm"]
ENGINES = ("auto", "builtin", "vllm")


def serving_engine(setting: str, *, cuda: bool, vllm_installed: bool) -> ServingEngine:
    """Which engine answers `ftcli serve`'s chats (`--engine`): `auto` is vLLM where it is installed and a CUDA GPU
    is there, else the built-in one; `vllm` asked for on a machine that can't run it is refused with the reason."""
    if setting not in ENGINES:
        raise UnsupportedSetting(f"--engine must be one of {', '.join(ENGINES)}, got {setting!r}")
    if setting == "builtin" or (setting == "auto" and not (cuda and vllm_installed)):
        return "builtin"
    missing = [
        reason
        for reason, wanting in (
            ("this machine has no CUDA GPU", not cuda),
            ("the vllm package is not installed (pip install vllm)", not vllm_installed),
        )
        if wanting
    ]
    if missing:
        raise UnsupportedSetting(f"--engine vllm needs a CUDA GPU and vLLM: {'; '.join(missing)}")
    return "vllm"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None
