"""LoRA fine-tuning of a causal LM on chat examples (peft), with OpenAI-style hyperparameters and metrics.

The loop is ours (a few dozen lines) because it is small and it reports what the job API needs: per-step
train loss and token accuracy, validation loss, per-epoch checkpoints (safetensors), trained tokens.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ftcli.data.estimate import default_epochs
from ftcli.server import allocator, hardware
from ftcli.server.chat_tokens import group_by_length, shuffled_batches
from ftcli.server.hardware import Machine
from ftcli.server.objectives import REFERENCE_ADAPTER, Dpo, GrpoSettings, Objective, Supervised, passes
from ftcli.server.protocol.hyperparameters import (
    AUTO,
    Auto,
    DpoHyperparameters,
    MethodName,
    ReinforcementHyperparameters,
    SupervisedHyperparameters,
    TrainingHyperparameters,
    parse,
)
from ftcli.server.reporting import Silent, StepMetrics, TrainingReporter
from ftcli.server.weights import save_pretrained_atomically

# Per-base defaults: (learning rate, LoRA rank, LoRA alpha). The tiny base needs a higher rate and rank to learn
# within seconds; real pretrained models take the usual LoRA values.
BASE_DEFAULTS = {"ftcli/tiny": (2e-3, 32, 64)}
DEFAULT_BASE = (2e-4, 16, 32)
MAX_GRAD_NORM = 1.0
KEEP_CHECKPOINTS = 3  # like OpenAI: the last three epochs
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """What the job asked for (server/protocol/hyperparameters.py), resolved: the job reports these values back."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    lora: LoraSettings = field(default_factory=LoraSettings)
    method: MethodName = "supervised"
    beta: float | None = None  # DPO only: how far the policy may move from the reference (OpenAI's default 0.1)
    # ftcli's own: stop after the first epoch whose mean training loss is at most this (n_epochs is then a ceiling),
    # so a run reaches the same quality on a slower or different CPU instead of the same step count
    stop_at_loss: float | None = None
    # ftcli's own: several examples per row (supervised only), no padding between them; off: rows padded to the
    # longest of a batch of similar lengths
    packing: bool = True
    # ftcli's own, decided with the model and the machine (server/hardware.py) once the base is loaded:
    max_seq_length: int | None = None  # longer examples are truncated (default: the model's context, at most 4096)
    quantization: str = "none"  # "4bit": QLoRA (CUDA and bitsandbytes)
    gradient_checkpointing: bool | None = None  # None: on for bases over 1B parameters
    precision: str | None = None  # bf16, fp16 or fp32: asked for, or from the machine
    # ftcli's own: shard the base's weights across the job's processes (`serve --processes N`) with PyTorch's FSDP2,
    # for a base that doesn't fit one GPU; off: each process holds the whole model (data parallelism)
    fsdp: bool = False
    # ftcli's own, from the model's shape and the machine: a batch is trained in forward passes of at most this many
    # tokens, gradients accumulated (None: one pass), so activation memory doesn't grow with the batch
    tokens_per_pass: int | None = None
    grpo: GrpoSettings | None = None  # reinforcement only: sampling, and the policy objective (server/grpo.py)

    @classmethod
    def resolve(cls, requested: TrainingHyperparameters, *, n_examples: int, base: str) -> Hyperparameters:
        """Every "auto" made a value: OpenAI's rules for epochs and batch size, the base's LoRA defaults; what
        depends on the loaded model and the machine stays None until `settle`."""

        def pick(value: T | Auto, default: T) -> T:
            return default if value == AUTO else value

        rate, rank, alpha = BASE_DEFAULTS.get(base, DEFAULT_BASE)
        multiplier = float(pick(requested.learning_rate_multiplier, 1.0))
        dpo = requested if isinstance(requested, DpoHyperparameters) else None
        supervised = requested if isinstance(requested, SupervisedHyperparameters) else None
        reinforcement = requested if isinstance(requested, ReinforcementHyperparameters) else None
        return cls(
            n_epochs=pick(requested.n_epochs, default_epochs(n_examples)),
            batch_size=pick(requested.batch_size, max(1, min(8, n_examples // 8 or 1))),
            learning_rate_multiplier=multiplier,
            learning_rate=rate * multiplier,
            lora=LoraSettings(
                rank=pick(requested.lora_rank, rank),
                alpha=pick(requested.lora_alpha, alpha),
                dropout=float(pick(requested.lora_dropout, 0.0)),
            ),
            method=requested.method,
            beta=float(pick(dpo.beta, 0.1)) if dpo else None,
            stop_at_loss=pick(getattr(requested, "stop_at_loss", AUTO), None),  # supervised and dpo only
            packing=pick(supervised.packing, True) if supervised else False,
            max_seq_length=pick(requested.max_seq_length, None),
            quantization=pick(requested.quantization, "none"),
            gradient_checkpointing=pick(requested.gradient_checkpointing, None),
            precision=pick(requested.precision, None),
            fsdp=pick(requested.fsdp, False),
            grpo=GrpoSettings.resolve(reinforcement) if reinforcement else None,
        )

    def trained_with(self) -> TrainingHyperparameters:
        """What the job reports: the method's own model with every setting the value it trained with (a reported
        job's hyperparameters are a valid request for the same training)."""
        values: dict[str, Any] = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "lora_rank": self.lora.rank,
            "lora_alpha": self.lora.alpha,
            "lora_dropout": self.lora.dropout,
            "max_seq_length": self.max_seq_length,
            "gradient_checkpointing": self.gradient_checkpointing,
            "quantization": self.quantization,
            "precision": self.precision,
            "fsdp": self.fsdp,
        }
        if self.method == "dpo":
            values["beta"] = self.beta
        elif self.grpo is not None:
            values.update(self.grpo.reported())
        else:
            values["packing"] = self.packing
        if self.stop_at_loss is not None:  # unset: none asked for, every epoch ran (nothing to report)
            values["stop_at_loss"] = self.stop_at_loss
        return parse(self.method, values)

    def settle(self, model: Any, machine: Machine) -> Hyperparameters:
        """The settings that depend on the loaded base and the machine, made concrete."""
        context = getattr(model.config, "max_position_embeddings", None)
        checkpointing = hardware.gradient_checkpointing(self.gradient_checkpointing, model.num_parameters())
        precision = hardware.precision(self.precision, machine)
        return replace(
            self,
            max_seq_length=hardware.max_seq_length(self.max_seq_length, context if isinstance(context, int) else None),
            gradient_checkpointing=checkpointing,
            precision=precision,
            tokens_per_pass=hardware.tokens_per_pass(
                model.config,
                element_bytes=4 if precision == "fp32" else 2,
                checkpointing=checkpointing,
                gpu_bytes=machine.gpu_bytes,
            ),
        )


@dataclass
class TrainingResult:
    trained_tokens: int = 0  # every token read, each epoch (as OpenAI bills a job), not only the answers'
    steps: int = 0
    stopped_early: tuple[int, float] | None = None  # (epoch, its mean training loss) when stop_at_loss was reached
    checkpoints: list[tuple[int, Path, StepMetrics]] = field(default_factory=list)


def load_base(path: Path, *, four_bit: bool = False, bf16: bool = False) -> tuple[Any, Any]:
    """Model and tokenizer from a local directory: safetensors only, never pickled weights, never a download.
    `four_bit`: QLoRA's NF4 loading, on the GPU (on the CPU where there is none: bitsandbytes' CPU backend).
    `bf16`: the weights held in bfloat16 (a job training in bf16: its frozen base is only ever multiplied in bf16, so
    an fp32 copy would cost twice the memory and a cast at every step; LoRA's own weights stay fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    quantized: dict[str, Any] = (
        {"quantization_config": hardware.four_bit_config(), "device_map": {"": hardware.four_bit_device()}}
        if four_bit
        else {}
    )
    held: dict[str, Any] = {"dtype": torch.bfloat16} if bf16 else {}
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True, **quantized, **held)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def train_lora(
    base_path: Path,
    base_name: str,
    examples: list[dict[str, Any]],
    *,
    output: Path,
    seed: int,
    requested: TrainingHyperparameters,
    validation: list[dict[str, Any]] | None = None,
    reporter: TrainingReporter | None = None,
    start_epoch: int = 0,
    resume_adapter: Path | None = None,
    reference_adapter: Path | None = None,
) -> tuple[Hyperparameters, TrainingResult]:
    """Supervised (loss on assistant tokens) or DPO (preferred vs non-preferred answers, the base without the
    adapter as the reference model) fine-tuning of a LoRA adapter; checkpoints per epoch. `reporter` is told the
    steps, epochs, checkpoints and warnings as they happen (server/reporting.py). `resume_adapter`: the adapter
    trained further (a paused job's checkpoint, or the fine-tuned model a job continues); `reference_adapter`: DPO's
    reference where it is not the base (the fine-tuned model a DPO job continues: SFT, then preferences)."""
    import torch

    report = reporter or Silent()
    allocator.release_freed_memory()
    torch.manual_seed(seed)
    machine = Machine.this_one()
    hyper = Hyperparameters.resolve(requested, n_examples=len(examples), base=base_name)
    hyper = replace(  # refused before loading, and decided before it: they decide how the base is held
        hyper,
        quantization=hardware.quantization(hyper.quantization, machine),
        precision=hardware.precision(hyper.precision, machine),
    )
    model, tokenizer = load_base(base_path, four_bit=hyper.quantization == "4bit", bf16=hyper.precision == "bf16")
    allocator.trim()  # what loading converted and let go of
    hyper = hyper.settle(model, machine)
    _prepare_memory(model, hyper)
    model = with_adapter(model, hyper, resume_adapter)
    if reference_adapter is not None and hyper.method == "dpo":  # frozen beside the trained one (objectives.Dpo)
        model.load_adapter(str(reference_adapter), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    # Accelerate places the model (CPU, or CUDA with bf16 autocast) and, when the job was launched as several
    # processes (torchrun, one per GPU), wraps it for data parallelism with gradients all-reduced.
    accelerator = _accelerator(hyper.precision or "fp32")
    length = hyper.max_seq_length
    objective: Objective = (
        Dpo(tokenizer, hyper.beta or 0.1, max_length=length)
        if hyper.method == "dpo"
        else Supervised(tokenizer, packing=hyper.packing, max_length=length)
    )
    objective.device = accelerator.device
    train = [objective.encode(e) for e in examples]
    valid = [objective.encode(e) for e in validation or []]
    truncated = sum(1 for item in train if item.truncated)
    if truncated and accelerator.is_main_process:
        report.warning(
            f"{truncated} of {len(train)} training examples are longer than max_seq_length={length} tokens and "
            "were truncated: their ends are not trained on (raise max_seq_length, or shorten them)"
        )
    world, rank = int(accelerator.num_processes), int(accelerator.process_index)
    main = accelerator.is_main_process
    if hyper.fsdp and world == 1:
        hyper = replace(hyper, fsdp=False)
        report.warning(
            "fsdp: this job runs as one process, so there is nothing to shard it across; trained unsharded "
            "(start the server with `ftcli serve --processes N`, one per GPU)"
        )
    if isinstance(objective, Supervised):
        faster = objective.speed_up(model)
        if faster and main:
            named = f"{', '.join(faster[:-1])} and {faster[-1]}" if len(faster) > 1 else faster[0]
            report.info(f"Training with {named}")
    largest = sum(sorted(item.tokens for item in train)[-hyper.batch_size :])
    if hyper.tokens_per_pass is not None and largest > hyper.tokens_per_pass and main:
        report.info(
            f"A batch is trained in forward passes of at most {hyper.tokens_per_pass:,} tokens, gradients added up "
            f"(the largest has {largest:,}), so the memory a step takes doesn't grow with the batch"
        )
    if hyper.fsdp:  # before the optimizer is made: sharding replaces the parameters with their shards
        model = _shard(model, accelerator.device)  # in place of Accelerate's wrapping, which shards on GPUs only
        if main:
            report.info(_sharding_note(model, world))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hyper.learning_rate)
    steps_per_epoch = math.ceil(math.ceil(len(train) / hyper.batch_size) / world)
    total = steps_per_epoch * hyper.n_epochs
    schedule = linear_schedule(optimizer, total, done=start_epoch * steps_per_epoch)
    if hyper.fsdp:
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    result = TrainingResult(steps=start_epoch * steps_per_epoch)
    model.train()
    for epoch in range(start_epoch, hyper.n_epochs):
        batching = shuffled_batches if hyper.packing else group_by_length
        batches = batching(train, hyper.batch_size, seed=seed + epoch)
        # Every process takes the same number of steps (DDP needs it): the last round is filled from the start.
        batches = [batches[i % len(batches)] for i in range(steps_per_epoch * world)][rank::world]
        epoch_losses: list[float] = []
        for batch in batches:
            loss, accuracy = _accumulate(model, objective, batch, hyper, accelerator)
            accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            result.steps += 1
            tokens = torch.tensor([sum(item.tokens for item in batch)], device=accelerator.device)
            result.trained_tokens += int(accelerator.reduce(tokens, "sum").item())
            metrics = StepMetrics(
                result.steps,
                total,
                epoch + 1,
                float(accelerator.reduce(loss.detach(), "mean")),
                float(accelerator.reduce(torch.tensor(accuracy, device=accelerator.device), "mean")),
            )
            epoch_losses.append(metrics.train_loss)  # reduced over processes: every rank sees the same mean
            if main:
                report.step(metrics)
            if report.should_stop():
                return hyper, result
        # Sharded, every process takes part in each forward pass (it gathers the weights): all evaluate.
        evaluates = bool(valid) and (main or hyper.fsdp)
        valid_loss = _evaluate(accelerator.unwrap_model(model), objective, valid) if evaluates else None
        metrics = StepMetrics(
            result.steps, total, epoch + 1, metrics.train_loss, metrics.train_mean_token_accuracy, valid_loss
        )
        accelerator.wait_for_everyone()
        adapter = _adapter_weights(model, hyper.fsdp)  # sharded: gathered from every process
        if main:
            _keep_checkpoint(accelerator.unwrap_model(model), adapter, output, result, metrics, report)
        mean_loss = sum(epoch_losses) / len(epoch_losses)
        if hyper.stop_at_loss is not None and mean_loss <= hyper.stop_at_loss and epoch + 1 < hyper.n_epochs:
            result.stopped_early = (epoch + 1, mean_loss)  # every rank decides alike: the losses were reduced
            break
    adapter = _adapter_weights(model, hyper.fsdp)
    if main:
        _save_adapter(accelerator.unwrap_model(model), output / "adapter", adapter)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the process group of a data-parallel run
    return hyper, result


def _accumulate(model: Any, objective: Objective, batch: list[Any], hyper: Hyperparameters, accelerator: Any) -> Any:
    """One step's gradients, over as many forward passes as the batch needs to keep within `tokens_per_pass`: each
    pass's mean loss weighed by its share of what the batch's loss is a mean over (answer tokens, pairs), so the
    gradients and the (loss, accuracy) returned are those of one pass over the whole batch."""
    import contextlib

    parts = passes(batch, hyper.tokens_per_pass)
    weights = [sum(objective.weight(example) for example in part) for part in parts]
    total = sum(weights)
    shares = [w / total for w in weights] if total else [1 / len(parts)] * len(parts)
    loss: Any = 0.0
    accuracy = 0.0
    for index, (part, share) in enumerate(zip(parts, shares, strict=True)):
        # Under data parallelism gradients are all-reduced once, after the last pass (sharded, every pass reduces)
        last = index == len(parts) - 1 or hyper.fsdp
        with contextlib.nullcontext() if last else accelerator.no_sync(model), lora_inputs_uncast(accelerator, model):
            with accelerator.autocast():
                part_loss, part_accuracy = objective.step(model, part)
            accelerator.backward(part_loss * share)
        allocator.trim()  # the pass's small blocks, before the next pass's activations
        loss = loss + part_loss.detach() * share
        accuracy += part_accuracy * share
    return loss, accuracy


@contextmanager
def lora_inputs_uncast(accelerator: Any, model: Any) -> Iterator[None]:
    """For a training pass (its forward under the job's autocast, and its backward, which recomputes checkpointed
    layers): LoRA layers take their input as it comes. PEFT casts a LoRA layer's input to its (fp32) weights' dtype,
    and autocast then casts it back to bf16 for the multiply: the same numbers, but each LoRA layer kept a bf16 copy
    of its own for the backward (q, k and v one each of the same input; gate and up too), and an fp32 one passed
    through. Only where autocast is on: outside it (validation, a bf16 base) the cast is what makes the dtypes meet;
    and only with a PEFT that has the switch (0.15 on)."""
    try:
        from peft.helpers import disable_input_dtype_casting
    except ImportError:  # an older PEFT: its cast, and the copies
        yield
        return
    with disable_input_dtype_casting(model, active=accelerator.mixed_precision in ("bf16", "fp16")):
        yield


def with_adapter(model: Any, hyper: Hyperparameters, resume_adapter: Path | None) -> Any:
    """The base with a new LoRA adapter of the job's settings, or the one a resumed job saved."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume_adapter is not None:
        return PeftModel.from_pretrained(model, resume_adapter, is_trainable=True)
    config = LoraConfig(
        r=hyper.lora.rank,
        lora_alpha=hyper.lora.alpha,
        lora_dropout=hyper.lora.dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def linear_schedule(optimizer: Any, total: int, *, done: int = 0) -> Any:
    """Linear warm-up over the first 5% of `total` steps, then linear decay to zero (the transformers Trainer's
    default schedule): the last steps settle instead of bouncing at the peak rate. `done`: the steps a resumed run
    already took (it continues the schedule where it stopped)."""
    import torch

    warmup = max(1, total // 20)

    def factor(step: int) -> float:
        step += done
        return min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _keep_checkpoint(
    model: Any,
    adapter: dict[str, Any] | None,
    output: Path,
    result: TrainingResult,
    metrics: StepMetrics,
    report: TrainingReporter,
) -> None:
    """The end of an epoch on the main process: report it (with its validation loss), save the epoch's adapter,
    keep three."""
    report.epoch_end(metrics)
    checkpoint = output / f"checkpoint-epoch-{metrics.epoch}"
    _save_adapter(model, checkpoint, adapter)
    result.checkpoints.append((metrics.epoch, checkpoint, metrics))
    for _, old, _ in result.checkpoints[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    result.checkpoints = result.checkpoints[-KEEP_CHECKPOINTS:]
    report.checkpoint_saved(metrics.epoch, checkpoint, metrics)


def _accelerator(precision: str) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # fp16: Accelerate scales the loss (a GradScaler) so small gradients don't vanish
    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")
    # Accelerate keeps one precision per process: one that trains again (a test, a benchmark) may ask for another
    # (the process-group part of its state is kept)
    AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())


def _prepare_memory(model: Any, hyper: Hyperparameters) -> None:
    """QLoRA's preparation of a 4-bit base, or gradient checkpointing (activations recomputed in the backward)."""
    if hyper.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=bool(hyper.gradient_checkpointing)
        )
    elif hyper.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # LoRA trains adapters only: the inputs must carry gradients


def _save_adapter(model: Any, directory: Path, weights: dict[str, Any] | None = None) -> None:
    """safetensors, written beside and renamed into place: a crash never leaves a half-written adapter. `weights`:
    the adapter's full tensors, when the model's are shards."""
    save_pretrained_atomically(directory, model, state_dict=weights)


def _shard(model: Any, device: Any) -> Any:
    """FSDP2 (`torch.distributed.fsdp.fully_shard`): each transformer block, then the rest, split across the
    processes; weights are gathered for a block's forward and backward and freed after. Works with gloo on CPUs
    (so it is tested in CI) and NCCL on GPUs."""
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    blocks = set(getattr(model, "_no_split_modules", None) or ()) | set(
        getattr(model.get_base_model(), "_no_split_modules", None) or ()
    )
    for module in list(model.modules()):
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def _sharding_note(model: Any, world: int) -> str:
    held = sum(_local(p).numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    return f"FSDP: the model's {total:,} parameters are sharded across {world} processes; this one holds {held:,}"


def _local(tensor: Any) -> Any:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _adapter_weights(model: Any, sharded: bool) -> dict[str, Any] | None:
    """The trained (adapter) weights in full, gathered from every process's shards; None when not sharded (the
    model saves its own). A collective: every process must call it."""
    if not sharded:
        return None
    return {
        name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().cpu()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def _evaluate(model: Any, objective: Objective, examples: list[Any]) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for index in range(0, len(examples), 8):
            losses.append(float(objective.step(model, examples[index : index + 8])[0]))
    model.train()
    return sum(losses) / len(losses)
