"""What a training step optimises: `Supervised` (cross-entropy on assistant tokens, packed rows or padded batches),
`Dpo` (preferences against the base without the adapter) and `Grpo` (reinforcement: sampled answers weighted by their
rewards, server/grpo.py samples and grades them). Each encodes examples once and computes a batch's loss."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from ftcli.data.chat_template import IGNORE, EncodedChat, encode_chat, encode_preference, render_prompt
from ftcli.server.chat_tokens import PACKED_ROW_TOKENS, collate, first_fit, pack
from ftcli.server.protocol.hyperparameters import AUTO, Auto, ReinforcementHyperparameters

T = TypeVar("T")


class Counted(Protocol):
    @property
    def tokens(self) -> int: ...


Example = TypeVar("Example", bound=Counted)


class Objective(Protocol):
    device: Any

    def encode(self, example: dict[str, Any]) -> Any: ...

    def step(self, model: Any, batch: list[Any]) -> tuple[Any, float]:
        """(loss tensor, accuracy): token accuracy for SFT, reward accuracy (chosen ranked first) for DPO."""
        ...

    def weight(self, example: Any, /) -> int:
        """What `step`'s loss is a mean over, counted in one example (answer tokens for SFT, one pair for DPO): a
        batch split into passes weighs each pass's loss by its share of the batch's."""
        ...


def passes(batch: list[Example], tokens_per_pass: int | None) -> list[list[Example]]:
    """A batch as forward passes of at most `tokens_per_pass` tokens of whole examples (one longer than that goes
    alone; None: one pass). Their gradients accumulate, each pass's loss weighed by its share, so the step is the
    one of a single pass over the batch in a fraction of its activation memory."""
    if tokens_per_pass is None:
        return [batch]
    return first_fit(batch, lambda example: example.tokens, tokens_per_pass)


class Supervised:
    def __init__(self, tokenizer: Any, *, packing: bool = True, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.packing = packing
        self.max_length = max_length
        self.device: Any = "cpu"
        self.row_tokens: int | None = PACKED_ROW_TOKENS  # None: a batch packed into one row (packed attention)
        self.head: Any = None  # the frozen output layer, where the answer-only loss applies (server/answer_loss.py)

    def speed_up(self, model: Any) -> list[str]:
        """The faster and leaner paths `model` allows, switched on, by name (to report): packed attention, so a batch
        packs into one row (no padding, no quadratic mask), layers that keep less for the backward, and the answer-only
        loss."""
        from ftcli.server.answer_loss import output_layer
        from ftcli.server.lean_layers import use_lean_layers
        from ftcli.server.packed_attention import use_packed_attention

        used = []
        if self.packing and use_packed_attention(model):
            self.row_tokens = None
            used.append("packed attention")
        if use_lean_layers(model):
            used.append("lean RMSNorm and SwiGLU")
        self.head = output_layer(model)
        if self.head is not None:
            used.append("answer-only loss")
        return used

    def weight(self, example: EncodedChat) -> int:
        return sum(1 for label in example.labels[1:] if label != IGNORE)  # a first token is never predicted

    def encode(self, example: dict[str, Any]) -> EncodedChat:
        messages, tools = example["messages"], example.get("tools")
        return encode_chat(self.tokenizer, messages, tools=tools, max_length=self.max_length)

    def step(self, model: Any, batch: list[EncodedChat]) -> tuple[Any, float]:
        pad = self.tokenizer.pad_token_id
        rows = pack(batch, pad, row_tokens=self.row_tokens) if self.packing else collate(batch, pad)
        inputs = on_device(rows, self.device)
        if self.head is not None:
            from ftcli.server.answer_loss import answer_loss

            labels = inputs.pop("labels")
            return answer_loss(model, self.head, inputs, labels)
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

    @property
    def tokens(self) -> int:
        return self.chosen.tokens + self.rejected.tokens

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


class Dpo:
    """Direct Preference Optimization (Rafailov et al., 2023) on OpenAI's preference format: the loss is
    -log σ(β·[(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))]) over the answer tokens;
    the reference π_ref is the same model with the LoRA adapter switched off, so no second copy is held; for a job that
    continues a fine-tuned model (SFT first, then preferences), that model's adapter, held beside the trained one as
    REFERENCE_ADAPTER."""

    def __init__(self, tokenizer: Any, beta: float, *, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.beta = beta
        self.max_length = max_length
        self.device: Any = "cpu"

    def weight(self, _example: EncodedPair) -> int:
        return 1  # the loss is a mean over pairs

    def encode(self, example: dict[str, Any]) -> EncodedPair:
        return EncodedPair(*encode_preference(self.tokenizer, example, max_length=self.max_length))

    def step(self, model: Any, batch: list[EncodedPair]) -> tuple[Any, float]:
        import torch

        pairs = [p.chosen for p in batch] + [p.rejected for p in batch]
        inputs = on_device(collate(pairs, self.tokenizer.pad_token_id), self.device)
        labels = inputs.pop("labels")
        policy = sequence_logps(model(**inputs).logits, labels)
        peft_model = getattr(model, "module", model)  # under data parallelism: the wrapped model
        with torch.no_grad(), reference_of(peft_model):
            reference = sequence_logps(peft_model(**inputs).logits, labels)
        n = len(batch)
        margin = self.beta * ((policy[:n] - reference[:n]) - (policy[n:] - reference[n:]))
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        return loss, float((margin.detach() > 0).float().mean())


REFERENCE_ADAPTER = "reference"  # DPO's reference where it is an adapter (a continued job's parent), not the base


@contextlib.contextmanager
def reference_of(peft_model: Any) -> Iterator[None]:
    """DPO's reference model for the length of the block: the REFERENCE_ADAPTER where the model holds one (switched
    to and back, as TRL's `ref_adapter_name` does), else the base with the adapter off."""
    if REFERENCE_ADAPTER not in peft_model.peft_config:
        with peft_model.disable_adapter():
            yield
        return
    trained = peft_model.active_adapter
    peft_model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
    try:
        yield
    finally:
        peft_model.set_adapter(trained)  # trainable again, the reference frozen


@dataclass(frozen=True, slots=True)
class GrpoSettings:
    """A reinforcement job's own settings, resolved (the job reports them as it trained)."""

    samples_per_prompt: int = 4
    max_new_tokens: int = 256
    temperature: float = 1.0
    kl_coefficient: float = 0.04
    clip_epsilon: float = 0.2
    updates_per_batch: int = 1
    eval_interval: int | None = None  # None until the loop knows the steps of an epoch (once per epoch)
    eval_samples: int = 1
    compute_multiplier: float = 1.0
    reasoning_effort: str = "default"

    @classmethod
    def resolve(cls, requested: ReinforcementHyperparameters) -> GrpoSettings:
        def pick(value: T | Auto, default: T) -> T:
            return default if value == AUTO else value

        multiplier = float(pick(requested.compute_multiplier, 1.0))
        return cls(
            samples_per_prompt=pick(requested.samples_per_prompt, max(2, round(4 * multiplier))),
            max_new_tokens=pick(requested.max_new_tokens, 256),
            temperature=float(pick(requested.temperature, 1.0)),
            kl_coefficient=float(pick(requested.kl_coefficient, 0.04)),
            clip_epsilon=float(pick(requested.clip_epsilon, 0.2)),
            updates_per_batch=pick(requested.updates_per_batch, 1),
            eval_interval=pick(requested.eval_interval, None),
            eval_samples=pick(requested.eval_samples, 1),
            compute_multiplier=multiplier,
            reasoning_effort=requested.reasoning_effort,
        )

    def reported(self) -> dict[str, Any]:
        """As the job reports them (every one a value: eval_interval once the loop settled it)."""
        return {
            "eval_interval": self.eval_interval if self.eval_interval is not None else AUTO,
            "eval_samples": self.eval_samples,
            "compute_multiplier": self.compute_multiplier,
            "reasoning_effort": self.reasoning_effort,
            "samples_per_prompt": self.samples_per_prompt,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "kl_coefficient": self.kl_coefficient,
            "clip_epsilon": self.clip_epsilon,
            "updates_per_batch": self.updates_per_batch,
        }


@dataclass(frozen=True, slots=True)
class EncodedPrompt:
    """A reinforcement record: its prompt's tokens (the chat template's generation prompt at the end) and the record
    itself, whose fields the grader reads as `{{item.<field>}}`."""

    input_ids: list[int]
    item: dict[str, Any]
    truncated: bool = False  # longer than the job allows a prompt: its start was cut off

    @property
    def tokens(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True, slots=True)
class Rollouts:
    """A step's sampled answers, one row each (a prompt's `samples_per_prompt` rows next to each other): the prompts
    left-padded, the answers right-padded; what the policy gradient needs of them."""

    prompt_ids: Any  # [rows, prompt length]
    prompt_mask: Any
    completion_ids: Any  # [rows, answer length]
    completion_mask: Any  # 1 up to and with the answer's end token
    advantages: Any  # [rows]: the reward normalised within its prompt's group
    old_logps: Any = None  # [rows, answer length]: the sampling policy's (None: the current one's, detached)
    reference_logps: Any = None  # the base's (the adapter off); None without a KL term

    def __len__(self) -> int:
        return int(self.completion_ids.shape[0])

    def rows(self, start: int, stop: int) -> Rollouts:
        def part(tensor: Any) -> Any:
            return None if tensor is None else tensor[start:stop]

        return Rollouts(*(part(getattr(self, field.name)) for field in fields(self)))


class Grpo:
    """Group Relative Policy Optimization (Shao et al., 2024, DeepSeekMath) on the LoRA adapter: each prompt's answers
    are weighted by their reward's distance from the group's mean (in the group's standard deviations); the policy
    ratio against the sampling policy is clipped as in PPO, and a KL penalty (the k3 estimator) holds the policy near
    the base, which is the same model with the adapter switched off. The loss is a mean over every answer token of
    the step (long answers weigh by their length, as in DAPO and TRL's default)."""

    def __init__(self, tokenizer: Any, settings: GrpoSettings, *, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        # the prompt keeps room for the answer within max_length (its start is cut, not its generation prompt)
        self.max_prompt = None if max_length is None else max(16, max_length - settings.max_new_tokens)
        self.device: Any = "cpu"

    def encode(self, example: dict[str, Any]) -> EncodedPrompt:
        text = render_prompt(self.tokenizer, example["messages"], example.get("tools"))
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        cut = self.max_prompt is not None and len(ids) > self.max_prompt
        return EncodedPrompt(ids[-self.max_prompt :] if cut and self.max_prompt else ids, example, cut)

    def advantages(self, rewards: list[float], failed: list[bool] | None = None) -> Any:
        """Each reward's distance from its group's mean, in the group's standard deviations (a group whose answers
        all scored alike teaches nothing: zeros). An answer the grader failed on (`failed`) has no score: it gets
        advantage 0 and stays out of its group's mean and spread, so a failure is neither punished as a 0 nor a way
        to beat a negative score."""
        import torch

        grouped = torch.tensor(rewards, dtype=torch.float32).view(-1, self.settings.samples_per_prompt)
        scored = (
            torch.ones_like(grouped)
            if failed is None
            else (~torch.tensor(failed, dtype=torch.bool)).view_as(grouped).to(grouped.dtype)
        )
        count = scored.sum(dim=1, keepdim=True).clamp(min=1)
        mean = (grouped * scored).sum(dim=1, keepdim=True) / count
        spread = (((grouped - mean) ** 2 * scored).sum(dim=1, keepdim=True) / count).sqrt()
        return ((grouped - mean) / (spread + 1e-4) * scored).flatten()

    def token_logps(self, model: Any, rollouts: Rollouts) -> Any:
        """log π(answer token | prompt, answer so far) for every answer position, at the sampling temperature (the
        distribution the answers were drawn from)."""
        import torch

        ids = torch.cat([rollouts.prompt_ids, rollouts.completion_ids], dim=1).to(self.device)
        mask = torch.cat([rollouts.prompt_mask, rollouts.completion_mask], dim=1).to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions as generation counted them
        width = rollouts.completion_ids.shape[1]
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1).logits
        logits = logits[:, :-1].float() / self.settings.temperature
        targets = rollouts.completion_ids.to(self.device)
        picked = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1)
        return picked - logits.logsumexp(-1)

    def step(self, model: Any, rollouts: Rollouts, answer_tokens: int) -> tuple[Any, float]:
        """(the loss of these rows, summed over their answer tokens and divided by `answer_tokens`, the step's
        total, so the step's micro-batches add up to its mean; the fraction of tokens whose ratio was clipped)."""
        import torch

        settings = self.settings
        logps = self.token_logps(model, rollouts)
        old = logps.detach() if rollouts.old_logps is None else rollouts.old_logps.to(self.device)
        ratio = torch.exp(logps - old)
        advantages = rollouts.advantages.to(self.device).unsqueeze(1)
        clipped = ratio.clamp(1 - settings.clip_epsilon, 1 + settings.clip_epsilon)
        per_token = -torch.min(ratio * advantages, clipped * advantages)
        if rollouts.reference_logps is not None and settings.kl_coefficient > 0:
            delta = rollouts.reference_logps.to(self.device) - logps
            per_token = per_token + settings.kl_coefficient * (torch.exp(delta) - delta - 1)
        mask = rollouts.completion_mask.to(self.device).to(per_token.dtype)
        loss = (per_token * mask).sum() / max(1, answer_tokens)
        was_clipped = ((ratio - clipped).abs() > 0).to(per_token.dtype)
        return loss, float((was_clipped * mask).sum().detach())


def on_device(tensors: dict[str, Any], device: Any) -> dict[str, Any]:
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def sequence_logps(logits: Any, labels: Any) -> Any:
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
