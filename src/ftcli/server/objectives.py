"""What a training step optimises: `Supervised` (cross-entropy on assistant tokens, packed rows or padded batches)
and `Dpo` (preferences against the base without the adapter). Each encodes examples once and computes a batch's
loss and accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ftcli.data.chat_template import IGNORE, EncodedChat, encode_chat, encode_preference
from ftcli.server.chat_tokens import PACKED_ROW_TOKENS, collate, pack


class Objective(Protocol):
    device: Any

    def encode(self, example: dict[str, Any]) -> Any: ...

    def step(self, model: Any, batch: list[Any]) -> tuple[Any, float]:
        """(loss tensor, accuracy): token accuracy for SFT, reward accuracy (chosen ranked first) for DPO."""
        ...


class Supervised:
    def __init__(self, tokenizer: Any, *, packing: bool = True, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.packing = packing
        self.max_length = max_length
        self.device: Any = "cpu"
        self.row_tokens: int | None = PACKED_ROW_TOKENS  # None: a batch packed into one row (packed attention)
        self.head: Any = None  # the frozen output layer, where the answer-only loss applies (server/answer_loss.py)

    def speed_up(self, model: Any) -> list[str]:
        """The faster paths `model` allows, switched on, by name (to report): packed attention, so a batch packs into
        one row (no padding, no quadratic mask), and the answer-only loss."""
        from ftcli.server.answer_loss import output_layer
        from ftcli.server.packed_attention import use_packed_attention

        used = []
        if self.packing and use_packed_attention(model):
            self.row_tokens = None
            used.append("packed attention")
        self.head = output_layer(model)
        if self.head is not None:
            used.append("answer-only loss")
        return used

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
    the reference π_ref is the same model with the LoRA adapter switched off, so no second copy is held."""

    def __init__(self, tokenizer: Any, beta: float, *, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.beta = beta
        self.max_length = max_length
        self.device: Any = "cpu"

    def encode(self, example: dict[str, Any]) -> EncodedPair:
        return EncodedPair(*encode_preference(self.tokenizer, example, max_length=self.max_length))

    def step(self, model: Any, batch: list[EncodedPair]) -> tuple[Any, float]:
        import torch

        pairs = [p.chosen for p in batch] + [p.rejected for p in batch]
        inputs = on_device(collate(pairs, self.tokenizer.pad_token_id), self.device)
        labels = inputs.pop("labels")
        policy = sequence_logps(model(**inputs).logits, labels)
        peft_model = getattr(model, "module", model)  # under data parallelism: the wrapped model
        with torch.no_grad(), peft_model.disable_adapter():
            reference = sequence_logps(peft_model(**inputs).logits, labels)
        n = len(batch)
        margin = self.beta * ((policy[:n] - reference[:n]) - (policy[n:] - reference[n:]))
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        return loss, float((margin.detach() > 0).float().mean())


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
