"""Supervised loss without the logits of the whole batch (issue 30): cross-entropy of the answer tokens only, computed
a slice of tokens at a time with its gradient, so no (tokens × vocabulary) tensor outlives its slice.

transformers computes logits for every position of a batch (prompts and padding too) in fp32 and keeps them, their
log-softmax and its gradient: for a 49k-word vocabulary that is 200 kB a token three times over, more than the rest of
a small model's activations. Here the output layer's input is taken as it arrives (a hook that hands the layer an empty
slice instead, so the model computes no logits), the positions whose next token is an answer token are picked, and
`_AnswerCrossEntropy` works through them in slices: logits, loss, accuracy and the gradient with respect to the hidden
states, all in the forward pass (the fused linear cross-entropy of Liger's kernels, in plain PyTorch). Only that
gradient (tokens × hidden size) is kept for the backward pass. The loss is the mean over answer tokens, as
transformers' own; a test holds them equal within a tolerance.

Imported when a job trains (it imports torch). Used for bases whose logits are the output layer's product alone (no
soft-capping or scaling: `packed_attention.supported`) and whose output layer is frozen, as LoRA keeps it.
"""

from __future__ import annotations

from typing import Any

import torch

from ftcli.data.chat_template import IGNORE

SLICE_TOKENS = 256  # a slice's logits: 256 × vocabulary × 4 bytes (50 MB for a 49k vocabulary)


def output_layer(model: Any) -> Any | None:
    """The frozen output layer whose input this loss can take, or None where the plain loss must be used."""
    from ftcli.server.packed_attention import supported

    inner = getattr(model, "module", model)  # under data parallelism: the wrapped model
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    config = getattr(base, "config", None)
    scaled = getattr(config, "logits_scaling", 1.0) not in (None, 1, 1.0)  # Granite divides its logits
    head = base.get_output_embeddings() if supported(config) and not scaled else None
    if head is None or not hasattr(head, "weight") or head.weight.requires_grad:
        return None
    return head


def answer_loss(model: Any, head: Any, inputs: dict[str, Any], labels: Any) -> tuple[Any, float]:
    """(mean cross-entropy over the answer tokens, token accuracy) of one forward pass of `model` on `inputs`."""
    captured: list[Any] = []

    def take_input(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        captured.append(args[0])
        return (args[0][..., :0, :], *args[1:])  # the layer computes logits for no position

    handle = head.register_forward_pre_hook(take_input)
    try:
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    hidden = captured[-1]
    targets = labels[:, 1:]
    answer = targets != IGNORE
    if not bool(answer.any()):  # nothing to learn from: a zero loss that still has a graph
        return hidden.sum() * 0.0, 0.0
    picked = hidden[:, :-1][answer]
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    # Sharded (FSDP2), the root's weights stay gathered from its forward to its backward; were the layer's still a
    # shard, every process gathers it alike
    weight = head.weight.full_tensor() if hasattr(head.weight, "full_tensor") else head.weight
    loss = _AnswerCrossEntropy.apply(  # type: ignore[no-untyped-call]
        picked, weight, getattr(head, "bias", None), targets[answer], correct
    )
    return loss, float(correct) / int(answer.sum())


class _AnswerCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T + bias` against `targets`, a slice at a time; the gradient with respect
    to `hidden` is computed on the way and kept (`weight` is frozen: it gets none). `correct` counts the argmax hits."""

    @staticmethod
    def forward(ctx: Any, hidden: Any, weight: Any, bias: Any, targets: Any, correct: Any) -> Any:
        count = hidden.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        gradient = torch.empty_like(hidden)
        for start in range(0, count, SLICE_TOKENS):
            piece, wanted = hidden[start : start + SLICE_TOKENS], targets[start : start + SLICE_TOKENS]
            logits = torch.nn.functional.linear(piece, weight, bias).float()
            normaliser = torch.logsumexp(logits, -1)
            total += (normaliser - logits.gather(1, wanted.unsqueeze(1)).squeeze(1)).sum()  # Σ −log softmax
            correct += (logits.argmax(-1) == wanted).sum()
            probabilities = logits.sub_(normaliser.unsqueeze(1)).exp_()  # softmax, in place: one slice-sized buffer
            probabilities[torch.arange(len(wanted), device=logits.device), wanted] -= 1.0  # − one-hot: ∂loss/∂logits
            gradient[start : start + SLICE_TOKENS] = (probabilities.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(gradient)
        ctx.count = count
        return total / count

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        (gradient,) = ctx.saved_tensors
        return gradient * (grad_outputs[0] / ctx.count).to(gradient.dtype), None, None, None, None
