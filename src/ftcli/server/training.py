"""LoRA fine-tuning of a causal LM on chat examples (peft), with OpenAI-style hyperparameters and metrics.

The loop is ours (a few dozen lines) because it is small and it reports what the job API needs: per-step
train loss and token accuracy, validation loss, per-epoch checkpoints (safetensors), trained tokens.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ftcli.data.estimate import default_epochs
from ftcli.server.chat_tokens import IGNORE, EncodedChat, collate, encode_chat, group_by_length, pack, shuffled_batches
from ftcli.server.weights import save_pretrained_atomically

# Per-base defaults: (learning rate, LoRA rank, LoRA alpha). The tiny base needs a higher rate and rank to learn
# within seconds; real pretrained models take the usual LoRA values.
BASE_DEFAULTS = {"ftcli/tiny": (2e-3, 32, 64)}
DEFAULT_BASE = (2e-4, 16, 32)
MAX_GRAD_NORM = 1.0
KEEP_CHECKPOINTS = 3  # like OpenAI: the last three epochs
MAX_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """What the job asked for, resolved: the job reports these values back."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    lora: LoraSettings = field(default_factory=LoraSettings)
    beta: float | None = None  # DPO only: how far the policy may move from the reference (OpenAI's default 0.1)
    # ftcli's own: stop after the first epoch whose mean training loss is at most this (n_epochs is then a ceiling),
    # so a run reaches the same quality on a slower or different CPU instead of the same step count
    stop_at_loss: float | None = None
    # ftcli's own: several examples per row (supervised only), no padding between them; off: rows padded to the
    # longest of a batch of similar lengths
    packing: bool = True

    @classmethod
    def resolve(
        cls, requested: dict[str, Any], *, n_examples: int, base: str, method: str = "supervised"
    ) -> Hyperparameters:
        def pick(key: str, default: Any) -> Any:
            value = requested.get(key, "auto")
            return default if value in (None, "auto") else value

        rate, rank, alpha = BASE_DEFAULTS.get(base, DEFAULT_BASE)
        multiplier = float(pick("learning_rate_multiplier", 1.0))
        batch = int(pick("batch_size", max(1, min(8, n_examples // 8 or 1))))
        lora = LoraSettings(
            rank=int(pick("lora_rank", rank)),
            alpha=int(pick("lora_alpha", alpha)),
            dropout=float(pick("lora_dropout", 0.0)),
        )
        return cls(
            n_epochs=int(pick("n_epochs", default_epochs(n_examples))),
            batch_size=batch,
            learning_rate_multiplier=multiplier,
            learning_rate=rate * multiplier,
            lora=lora,
            beta=float(pick("beta", 0.1)) if method == "dpo" else None,
            stop_at_loss=float(requested["stop_at_loss"]) if requested.get("stop_at_loss") is not None else None,
            packing=bool(pick("packing", True)) and method != "dpo",
        )


@dataclass(frozen=True, slots=True)
class StepMetrics:
    step: int
    total_steps: int
    epoch: int
    train_loss: float
    train_mean_token_accuracy: float
    valid_loss: float | None = None


@dataclass
class TrainingResult:
    trained_tokens: int = 0
    steps: int = 0
    stopped_early: tuple[int, float] | None = None  # (epoch, its mean training loss) when stop_at_loss was reached
    checkpoints: list[tuple[int, Path, StepMetrics]] = field(default_factory=list)


def load_base(path: Path) -> tuple[Any, Any]:
    """Model and tokenizer from a local directory: safetensors only, never pickled weights, never a download."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True)
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
    requested: dict[str, Any],
    validation: list[dict[str, Any]] | None = None,
    on_step: Callable[[StepMetrics], None] | None = None,
    on_checkpoint: Callable[[int, Path, StepMetrics], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    start_epoch: int = 0,
    resume_adapter: Path | None = None,
    method: str = "supervised",
) -> tuple[Hyperparameters, TrainingResult]:
    """Supervised (loss on assistant tokens) or DPO (preferred vs non-preferred answers, the base without the
    adapter as the reference model) fine-tuning of a LoRA adapter; checkpoints per epoch."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(seed)
    model, tokenizer = load_base(base_path)
    hyper = Hyperparameters.resolve(requested, n_examples=len(examples), base=base_name, method=method)
    if resume_adapter is not None:
        model = PeftModel.from_pretrained(model, resume_adapter, is_trainable=True)
    else:
        config = LoraConfig(
            r=hyper.lora.rank,
            lora_alpha=hyper.lora.alpha,
            lora_dropout=hyper.lora.dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    # Accelerate places the model (CPU, or CUDA with bf16 autocast) and, when the job was launched as several
    # processes (torchrun, one per GPU), wraps it for data parallelism with gradients all-reduced.
    accelerator = _accelerator()
    objective: Objective = (
        Dpo(tokenizer, hyper.beta or 0.1) if method == "dpo" else Supervised(tokenizer, packing=hyper.packing)
    )
    objective.device = accelerator.device
    train = [objective.encode(e) for e in examples]
    valid = [objective.encode(e) for e in validation or []]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hyper.learning_rate)
    world, rank = int(accelerator.num_processes), int(accelerator.process_index)
    steps_per_epoch = math.ceil(math.ceil(len(train) / hyper.batch_size) / world)
    total = steps_per_epoch * hyper.n_epochs
    # Linear warm-up over the first 5% of steps, then linear decay to zero (the transformers Trainer's default
    # schedule): the last steps settle instead of bouncing at the peak rate.
    warmup = max(1, total // 20)
    done = start_epoch * steps_per_epoch  # a resumed run continues the schedule where it stopped

    def factor(step: int) -> float:
        step += done
        return min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model, optimizer = accelerator.prepare(model, optimizer)
    main = accelerator.is_main_process
    result = TrainingResult(steps=start_epoch * steps_per_epoch)
    model.train()
    for epoch in range(start_epoch, hyper.n_epochs):
        batching = shuffled_batches if hyper.packing else group_by_length
        batches = batching(train, hyper.batch_size, seed=seed + epoch)
        # Every process takes the same number of steps (DDP needs it): the last round is filled from the start.
        batches = [batches[i % len(batches)] for i in range(steps_per_epoch * world)][rank::world]
        epoch_losses: list[float] = []
        for batch in batches:
            with accelerator.autocast():
                loss, accuracy = objective.step(model, batch)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            result.steps += 1
            tokens = torch.tensor([sum(item.trained_tokens for item in batch)], device=accelerator.device)
            result.trained_tokens += int(accelerator.reduce(tokens, "sum").item())
            metrics = StepMetrics(
                result.steps,
                total,
                epoch + 1,
                float(accelerator.reduce(loss.detach(), "mean")),
                float(accelerator.reduce(torch.tensor(accuracy, device=accelerator.device), "mean")),
            )
            epoch_losses.append(metrics.train_loss)  # reduced over processes: every rank sees the same mean
            if on_step and main:
                on_step(metrics)
            if should_stop():
                return hyper, result
        valid_loss = _evaluate(accelerator.unwrap_model(model), objective, valid) if valid and main else None
        metrics = StepMetrics(
            result.steps, total, epoch + 1, metrics.train_loss, metrics.train_mean_token_accuracy, valid_loss
        )
        accelerator.wait_for_everyone()
        if main:
            _keep_checkpoint(accelerator.unwrap_model(model), output, result, metrics, on_step, on_checkpoint)
        mean_loss = sum(epoch_losses) / len(epoch_losses)
        if hyper.stop_at_loss is not None and mean_loss <= hyper.stop_at_loss and epoch + 1 < hyper.n_epochs:
            result.stopped_early = (epoch + 1, mean_loss)  # every rank decides alike: the losses were reduced
            break
    if main:
        _save_adapter(accelerator.unwrap_model(model), output / "adapter")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the process group of a data-parallel run
    return hyper, result


def _keep_checkpoint(
    model: Any,
    output: Path,
    result: TrainingResult,
    metrics: StepMetrics,
    on_step: Callable[[StepMetrics], None] | None,
    on_checkpoint: Callable[[int, Path, StepMetrics], None] | None,
) -> None:
    """The end of an epoch on the main process: report the validation loss, save the epoch's adapter, keep three."""
    if metrics.valid_loss is not None and on_step:
        on_step(metrics)
    checkpoint = output / f"checkpoint-epoch-{metrics.epoch}"
    _save_adapter(model, checkpoint)
    result.checkpoints.append((metrics.epoch, checkpoint, metrics))
    for _, old, _ in result.checkpoints[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    result.checkpoints = result.checkpoints[-KEEP_CHECKPOINTS:]
    if on_checkpoint:
        on_checkpoint(metrics.epoch, checkpoint, metrics)


def _accelerator() -> Any:
    import torch
    from accelerate import Accelerator

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available())


def _save_adapter(model: Any, directory: Path) -> None:
    """safetensors, written beside and renamed into place: a crash never leaves a half-written adapter."""
    save_pretrained_atomically(directory, model)


class Objective(Protocol):
    device: Any

    def encode(self, example: dict[str, Any]) -> Any: ...

    def step(self, model: Any, batch: list[Any]) -> tuple[Any, float]:
        """(loss tensor, accuracy): token accuracy for SFT, reward accuracy (chosen ranked first) for DPO."""
        ...


class Supervised:
    def __init__(self, tokenizer: Any, *, packing: bool = True) -> None:
        self.tokenizer = tokenizer
        self.packing = packing
        self.device: Any = "cpu"

    def encode(self, example: dict[str, Any]) -> EncodedChat:
        return encode_chat(self.tokenizer, example["messages"], tools=example.get("tools"), max_length=MAX_LENGTH)

    def step(self, model: Any, batch: list[EncodedChat]) -> tuple[Any, float]:
        rows = (pack if self.packing else collate)(batch, self.tokenizer.pad_token_id)
        inputs = _on(rows, self.device)
        outputs = model(**inputs, use_cache=False)  # no cache: transformers then reads packed rows' position ids
        return outputs.loss, _accuracy(outputs.logits.detach(), inputs["labels"])


@dataclass(frozen=True, slots=True)
class EncodedPair:
    chosen: EncodedChat
    rejected: EncodedChat

    @property
    def input_ids(self) -> list[int]:  # for grouping by length: the longer of the two
        return max(self.chosen.input_ids, self.rejected.input_ids, key=len)

    @property
    def trained_tokens(self) -> int:
        return self.chosen.trained_tokens + self.rejected.trained_tokens


class Dpo:
    """Direct Preference Optimization (Rafailov et al., 2023) on OpenAI's preference format: the loss is
    -log σ(β·[(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))]) over the answer tokens;
    the reference π_ref is the same model with the LoRA adapter switched off, so no second copy is held."""

    def __init__(self, tokenizer: Any, beta: float) -> None:
        self.tokenizer = tokenizer
        self.beta = beta
        self.device: Any = "cpu"

    def encode(self, example: dict[str, Any]) -> EncodedPair:
        # Earlier assistant turns belong to the prompt: weight 0, only the compared answers are scored.
        prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in example["input"]["messages"]]
        tools = example["input"].get("tools")

        def encode(output: list[dict[str, Any]]) -> EncodedChat:
            return encode_chat(self.tokenizer, [*prompt, *output], tools=tools, max_length=MAX_LENGTH)

        return EncodedPair(encode(example["preferred_output"]), encode(example["non_preferred_output"]))

    def step(self, model: Any, batch: list[EncodedPair]) -> tuple[Any, float]:
        import torch

        pairs = [p.chosen for p in batch] + [p.rejected for p in batch]
        inputs = _on(collate(pairs, self.tokenizer.pad_token_id), self.device)
        labels = inputs.pop("labels")
        policy = _sequence_logps(model(**inputs).logits, labels)
        peft_model = getattr(model, "module", model)  # under data parallelism: the wrapped model
        with torch.no_grad(), peft_model.disable_adapter():
            reference = _sequence_logps(peft_model(**inputs).logits, labels)
        n = len(batch)
        margin = self.beta * ((policy[:n] - reference[:n]) - (policy[n:] - reference[n:]))
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        return loss, float((margin.detach() > 0).float().mean())


def _on(tensors: dict[str, Any], device: Any) -> dict[str, Any]:
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def _sequence_logps(logits: Any, labels: Any) -> Any:
    """Σ log p(token) over each row's labelled (answer) tokens."""
    import torch

    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def _accuracy(logits: Any, labels: Any) -> float:
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != -100
    return float((predicted[mask] == target[mask]).float().mean()) if mask.any() else 0.0


def _evaluate(model: Any, objective: Objective, examples: list[Any]) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for index in range(0, len(examples), 8):
            losses.append(float(objective.step(model, examples[index : index + 8])[0]))
    model.train()
    return sum(losses) / len(losses)
