"""Reinforcement fine-tuning (OpenAI's RFT jobs) on the LoRA adapter: GRPO in ftcli's own loop.

Each step takes `batch_size` prompts of the training file, samples `samples_per_prompt` answers to each (one batched
`generate`, prompts left-padded, at the job's temperature), has the job's grader score them (data/graders/engine.py:
model graders' judges are this server's own models, python graders run sandboxed) and moves the adapter toward the
answers that scored above their group's mean (objectives.Grpo: a clipped policy ratio, a KL term against the base).
Every `eval_interval` steps the validation file's prompts are answered and graded too. A grader that fails on an
answer gives it reward 0, and the step's failures go into an error event: training goes on.

Why not TRL's GRPOTrainer: bench/rft_speed.py ran both on the same task and settings (a 2-CPU machine, fp32): on
ftcli/tiny ftcli took 0.89-0.90 of TRL's time per step at 544 MB peak memory against 674 MB; on SmolLM2-135M 0.76
of its time at 2.4 GB against 3.7 GB, the same rewards step for step. And it fits the jobs API where TRL doesn't:
TRL's reward functions get completions and dataset columns, not OpenAI's grader with each record as `item`; its
metrics go to its own logs, its checkpoints by steps in its own layout; a job needs a metrics event each step, an
epoch's checkpoint to resume from, and the LoRA, precision and memory settings `train_lora` decides.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.server import hardware
from ftcli.server.chat_tokens import shuffled_batches
from ftcli.server.hardware import Machine
from ftcli.server.objectives import EncodedPrompt, Grpo, GrpoSettings, Rollouts
from ftcli.server.reporting import Rewards, Silent, StepMetrics, TrainingReporter
from ftcli.server.training import (
    MAX_GRAD_NORM,
    Hyperparameters,
    TrainingResult,
    _accelerator,
    _keep_checkpoint,
    _prepare_memory,
    _save_adapter,
    linear_schedule,
    load_base,
    lora_inputs_uncast,
    with_adapter,
)

if TYPE_CHECKING:
    from ftcli.data.graders.engine import Judge, PythonRunner
    from ftcli.data.graders.spec import Grader
    from ftcli.server.protocol.hyperparameters import ReinforcementHyperparameters

GENERATION_ROWS = 64  # answers generated at once (each row holds its key-value cache)
TRAINING_ROWS = 8  # answers per forward pass of the policy gradient (their logits: rows × tokens × vocabulary)
ERRORS_SHOWN = 3  # distinct grader errors an event quotes


@dataclass(frozen=True)
class Grading:
    """What scores the answers: the job's grader and the seams its model and python graders run through."""

    grader: Grader
    judge: Judge | None = None
    python: PythonRunner | None = None


@dataclass(frozen=True)
class Graded:
    rewards: list[float]
    errors: list[str]  # one per failed answer
    failed: list[bool] | None = None  # per answer: the grader failed on it (its reward 0 is no score)


def train_grpo(
    base_path: Path,
    base_name: str,
    examples: list[dict[str, Any]],
    *,
    grading: Grading,
    output: Path,
    seed: int,
    requested: ReinforcementHyperparameters,
    validation: list[dict[str, Any]] | None = None,
    reporter: TrainingReporter | None = None,
    start_epoch: int = 0,
    resume_adapter: Path | None = None,
) -> tuple[Hyperparameters, TrainingResult]:
    """GRPO on a LoRA adapter (see the module's docstring); checkpoints per epoch, reported as `train_lora` reports
    (server/reporting.py), each step's metrics with the rewards of its answers."""
    import torch

    report = reporter or Silent()
    torch.manual_seed(seed)
    machine = Machine.this_one()
    hyper = Hyperparameters.resolve(requested, n_examples=len(examples), base=base_name)
    hyper = replace(
        hyper,
        quantization=hardware.quantization(hyper.quantization, machine),
        precision=hardware.precision(hyper.precision, machine),
    )
    model, tokenizer = load_base(base_path, four_bit=hyper.quantization == "4bit", bf16=hyper.precision == "bf16")
    hyper = hyper.settle(model, machine)
    _prepare_memory(model, hyper)
    model = with_adapter(model, hyper, resume_adapter)
    accelerator = _accelerator(hyper.precision or "fp32")
    main = accelerator.is_main_process
    world, rank = int(accelerator.num_processes), int(accelerator.process_index)
    settings = hyper.grpo or GrpoSettings()
    objective = Grpo(tokenizer, settings, max_length=hyper.max_seq_length)
    objective.device = accelerator.device
    train = [objective.encode(e) for e in examples]
    valid = [objective.encode(e) for e in validation or []]
    if main:
        _warn_before(report, train, objective, settings)
    steps_per_epoch = math.ceil(math.ceil(len(train) / hyper.batch_size) / world)
    total = steps_per_epoch * hyper.n_epochs
    interval = settings.eval_interval or steps_per_epoch  # auto: once per epoch
    settings = replace(settings, eval_interval=interval)
    hyper = replace(hyper, grpo=settings)
    objective.settings = settings
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hyper.learning_rate)
    updates = settings.updates_per_batch
    schedule = linear_schedule(optimizer, total * updates, done=start_epoch * steps_per_epoch * updates)
    model, optimizer = accelerator.prepare(model, optimizer)
    result = TrainingResult(steps=start_epoch * steps_per_epoch)
    metrics: StepMetrics | None = None
    for epoch in range(start_epoch, hyper.n_epochs):
        batches = shuffled_batches(train, hyper.batch_size, seed=seed + epoch)
        # Every process takes the same number of steps (DDP needs it): the last round is filled from the start.
        batches = [batches[i % len(batches)] for i in range(steps_per_epoch * world)][rank::world]
        for batch in batches:
            rollouts, graded = _rollouts(accelerator, model, objective, batch, grading)
            losses = []
            for _ in range(updates):
                losses.append(_update(accelerator, model, objective, rollouts))
                accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            result.steps += 1
            tokens = int(rollouts.prompt_mask.sum() + rollouts.completion_mask.sum())
            result.trained_tokens += int(accelerator.reduce(torch.tensor([tokens], device=accelerator.device), "sum"))
            loss = float(accelerator.reduce(torch.tensor(sum(losses) / updates, device=accelerator.device), "mean"))
            if graded.errors and main:
                report.error(_grader_failures(f"Step {result.steps}", graded))
            evaluates = bool(valid) and main and (result.steps % interval == 0 or result.steps == total)
            metrics = StepMetrics(
                result.steps,
                total,
                epoch + 1,
                loss,
                None,
                train_rewards=_reduced(accelerator, graded.rewards),
                valid_rewards=_evaluate(accelerator, model, objective, valid, grading, report, result.steps)
                if evaluates
                else None,
            )
            if main:
                report.step(metrics)
            if report.should_stop():
                return hyper, result
        accelerator.wait_for_everyone()
        if main and metrics is not None:
            _keep_checkpoint(accelerator.unwrap_model(model), None, output, result, metrics, report)
    if main:
        _save_adapter(accelerator.unwrap_model(model), output / "adapter")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return hyper, result


def _warn_before(report: TrainingReporter, train: list[EncodedPrompt], objective: Grpo, settings: GrpoSettings) -> None:
    truncated = sum(1 for item in train if item.truncated)
    if truncated:
        report.warning(
            f"{truncated} of {len(train)} training prompts leave less than max_new_tokens={settings.max_new_tokens} "
            f"tokens for the answer within max_seq_length: their starts were cut to {objective.max_prompt} tokens "
            "(raise max_seq_length, or shorten them)"
        )
    if settings.reasoning_effort != "default":
        report.warning(
            f"reasoning_effort={settings.reasoning_effort!r} has no effect here: the local bases take no reasoning "
            "effort (it applies to OpenAI's reasoning models)"
        )


@contextlib.contextmanager
def _without_generation_defaults(model: Any) -> Iterator[None]:
    """The model's generation_config.json set aside while answers are sampled: generate fills every setting left
    unset from it, and some have no neutral value to pass instead (suppress_tokens, bad_words_ids, sequence_bias,
    forced tokens would sample from another distribution than the one the policy gradient scores)."""
    from transformers import GenerationConfig

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel's transformer
    kept = getattr(inner, "generation_config", None)
    inner.generation_config = GenerationConfig()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        inner.generation_config = kept


def sample_answers(
    model: Any, tokenizer: Any, prompts: Sequence[EncodedPrompt], copies: int, settings: GrpoSettings, device: Any
) -> Rollouts:
    """`copies` answers to each prompt (next to each other), sampled at the job's temperature from the whole
    distribution (no top-k or top-p: the policy gradient's log-probabilities are of that same distribution).
    The advantages are left at zero: the grader hasn't spoken yet."""
    import torch
    from transformers import GenerationConfig

    pad, end = tokenizer.pad_token_id, tokenizer.eos_token_id
    rows = [prompt.input_ids for prompt in prompts for _ in range(copies)]
    width = max(len(row) for row in rows)
    prompt_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    prompt_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):  # left padding: every prompt ends where the answers begin
        prompt_ids[index, width - len(row) :] = torch.tensor(row)
        prompt_mask[index, width - len(row) :] = 1
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=True,
        temperature=settings.temperature,
        top_k=0,
        top_p=1.0,
        # set, not left None: generate fills None from the model's generation_config.json, and a repetition
        # penalty or a min_p there would sample from another distribution than token_logps scores
        min_p=0.0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_new_tokens=0,
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=pad,
        eos_token_id=end,
    )
    answers = []
    was_training = model.training
    model.eval()  # no dropout: the answers are the policy's own
    with torch.no_grad(), _without_generation_defaults(model):
        for start in range(0, len(rows), GENERATION_ROWS):
            ids = prompt_ids[start : start + GENERATION_ROWS].to(device)
            mask = prompt_mask[start : start + GENERATION_ROWS].to(device)
            generated = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            answers.append(generated[:, width:].cpu())
    model.train(was_training)
    longest = max(1, *(answer.shape[1] for answer in answers))
    completion_ids = torch.cat(
        [torch.nn.functional.pad(answer, (0, longest - answer.shape[1]), value=pad) for answer in answers]
    )
    # an answer is its tokens up to and with its end token (what generate pads with after it is not the answer's)
    ended = (completion_ids == end).int()
    after_end = (ended.cumsum(1) - ended) > 0
    completion_mask = (~after_end).long()
    return Rollouts(prompt_ids, prompt_mask, completion_ids, completion_mask, torch.zeros(len(rows)))


def answer_texts(tokenizer: Any, rollouts: Rollouts) -> list[str]:
    return [
        tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
        for ids, mask in zip(rollouts.completion_ids, rollouts.completion_mask, strict=True)
    ]


def grade_answers(grading: Grading, items: Sequence[dict[str, Any]], texts: Sequence[str]) -> Graded:
    from ftcli.data.graders.engine import Sample, grade_batch

    samples = [Sample.of_text(text) for text in texts]
    results = grade_batch(grading.grader, items, samples, judge=grading.judge, python=grading.python)
    return Graded(
        [result.reward for result in results],
        [error for r in results for error in r.errors[:1]],
        [bool(result.errors) for result in results],
    )


def _rollouts(
    accelerator: Any, model: Any, objective: Grpo, batch: list[EncodedPrompt], grading: Grading
) -> tuple[Rollouts, Graded]:
    """The step's answers sampled and graded, with what the policy gradient needs of them: the advantages, the
    sampling policy's log-probabilities (when the batch is trained on more than once) and the base's (for the KL)."""
    import torch

    settings = objective.settings
    copies = settings.samples_per_prompt
    policy = accelerator.unwrap_model(model)
    with accelerator.autocast():
        rollouts = sample_answers(policy, objective.tokenizer, batch, copies, settings, accelerator.device)
    items = [prompt.item for prompt in batch for _ in range(copies)]
    graded = grade_answers(grading, items, answer_texts(objective.tokenizer, rollouts))
    rollouts = replace(rollouts, advantages=objective.advantages(graded.rewards, graded.failed))

    def logps(adapter_off: bool) -> Any:
        parts = []
        was_training = policy.training
        policy.eval()  # no dropout: the sampling policy's and the base's own log-probabilities, not a noisy draw
        with torch.no_grad(), accelerator.autocast():
            for start in range(0, len(rollouts), TRAINING_ROWS):
                rows = rollouts.rows(start, start + TRAINING_ROWS)
                with policy.disable_adapter() if adapter_off else contextlib.nullcontext():
                    parts.append(objective.token_logps(policy, rows).cpu())
        policy.train(was_training)
        return torch.cat(parts)

    if settings.updates_per_batch > 1:
        rollouts = replace(rollouts, old_logps=logps(adapter_off=False))
    if settings.kl_coefficient > 0:
        rollouts = replace(rollouts, reference_logps=logps(adapter_off=True))
    return rollouts, graded


def _update(accelerator: Any, model: Any, objective: Grpo, rollouts: Rollouts) -> float:
    """One optimizer step's gradients over every answer of the step, in forward passes of TRAINING_ROWS answers
    (gradients all-reduced once, after the last); the step's loss."""
    answer_tokens = int(rollouts.completion_mask.sum())
    starts = range(0, len(rollouts), TRAINING_ROWS)
    total = 0.0
    for index, start in enumerate(starts):
        last = index == len(starts) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model), lora_inputs_uncast(accelerator, model):
            with accelerator.autocast():
                loss, _clipped = objective.step(model, rollouts.rows(start, start + TRAINING_ROWS), answer_tokens)
            accelerator.backward(loss)
        total += float(loss.detach())
    return total


def _evaluate(
    accelerator: Any,
    model: Any,
    objective: Grpo,
    valid: list[EncodedPrompt],
    grading: Grading,
    report: TrainingReporter,
    step: int,
) -> Rewards:
    """The rewards of `eval_samples` answers to every validation prompt (on the main process)."""
    settings = objective.settings
    policy = accelerator.unwrap_model(model)
    per_call = max(1, GENERATION_ROWS // settings.eval_samples)
    rewards: list[float] = []
    errors: list[str] = []
    for start in range(0, len(valid), per_call):
        prompts = valid[start : start + per_call]
        with accelerator.autocast():
            rollouts = sample_answers(
                policy, objective.tokenizer, prompts, settings.eval_samples, settings, accelerator.device
            )
        items = [prompt.item for prompt in prompts for _ in range(settings.eval_samples)]
        graded = grade_answers(grading, items, answer_texts(objective.tokenizer, rollouts))
        rewards += graded.rewards
        errors += graded.errors
    if errors:
        report.error(_grader_failures(f"Validation at step {step}", Graded(rewards, errors)))
    return Rewards.of(rewards)


def _reduced(accelerator: Any, rewards: list[float]) -> Rewards:
    """The step's rewards over every process (their sums: the processes' batches may differ in size)."""
    import torch

    sums = torch.tensor(
        [sum(rewards), sum(r * r for r in rewards), float(len(rewards))], dtype=torch.float64, device=accelerator.device
    )
    total, squares, count = (float(value) for value in accelerator.reduce(sums, "sum"))
    mean = total / count
    return Rewards(mean, math.sqrt(max(0.0, squares / count - mean * mean)), int(count))


def _grader_failures(when: str, graded: Graded) -> str:
    shown = list(dict.fromkeys(graded.errors))[:ERRORS_SHOWN]
    return (
        f"{when}: the grader failed on {len(graded.errors)} of {len(graded.rewards)} answers, which got reward 0: "
        + "; ".join(shown)
    )[:2000]
