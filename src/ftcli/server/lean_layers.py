"""RMSNorm and the SwiGLU product with less kept for the backward pass (issue 30): the same outputs, a fifth less
activation memory on a Llama-shaped model.

What autograd keeps of transformers' own layers, per token and layer of SmolLM2-135M in bf16 (measured): the RMSNorm
keeps an fp32 copy of its input (twice the bf16 input's size, two norms a layer), and `silu(gate) * up` keeps gate, up
and silu(gate). Here the norm keeps its bf16 input and one number a token, and the product keeps gate and up and
recomputes the sigmoid in the backward (in fp32, a slice of rows at a time): 5.4 of 26 kB a token and layer.

A layer is replaced (its instance's `forward`) only after its own forward and the lean one agree on a probe input,
so a model whose norm or MLP computes something else (Gemma's 1 + weight, OLMo's order of the cast, a GELU MLP)
keeps its own. The lean functions are exact in fp32 and differ from transformers' by bf16 rounding in bf16; the
numerics test holds training losses and LoRA gradients to the plain path's.
"""

from __future__ import annotations

import types
from typing import Any

import torch

PROBE_TOKENS = 3
# The SwiGLU backward works in fp32 on slices of this many values (512 kB, under glibc's own-mapping threshold: they
# come from the heap and are reused), not on whole (tokens × intermediate) tensors: those fp32 temporaries were a
# quarter of a step's live tensors at its peak on the toy base (71 MB → 51 MB)
BACKWARD_SLICE_VALUES = 1 << 17


class _RmsNorm(torch.autograd.Function):
    """`weight * (x / rms(x)).to(x.dtype)` (transformers' Llama RMSNorm), keeping x and 1/rms(x) only."""

    @staticmethod
    def forward(ctx: Any, x: Any, weight: Any, eps: float) -> Any:
        wide = x.float()
        inverse_rms = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, inverse_rms)
        return weight * (wide * inverse_rms).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        x, weight, inverse_rms = ctx.saved_tensors
        normalised = x.float() * inverse_rms
        grad = grad_outputs[0]
        scaled = (grad * weight).float()
        grad_x = inverse_rms * (scaled - normalised * (scaled * normalised).mean(-1, keepdim=True))
        grad_weight = (
            (grad.float() * normalised).reshape(-1, weight.shape[-1]).sum(0).to(weight.dtype)
            if ctx.needs_input_grad[1]
            else None
        )
        return grad_x.to(x.dtype), grad_weight, None


class _SwiGlu(torch.autograd.Function):
    """`silu(gate) * up`, keeping gate and up only."""

    @staticmethod
    def forward(ctx: Any, gate: Any, up: Any) -> Any:
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    @torch.autograd.function.once_differentiable  # in place: no graph of the backward itself
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        gate, up = ctx.saved_tensors
        grad = grad_outputs[0]
        grad_gate, grad_up = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (gate, up))  # contiguous
        width = gate.shape[-1]
        # on a GPU in one piece: there the cost of slices is kernel launches, and its allocator reuses the temporaries
        rows = max(1, BACKWARD_SLICE_VALUES // width if gate.device.type == "cpu" else gate.numel() // width)
        slices = (t.reshape(-1, t.shape[-1]).split(rows) for t in (gate, up, grad, grad_gate, grad_up))
        for piece in zip(*slices, strict=True):
            _swiglu_backward(*piece)
        return grad_gate, grad_up


def _swiglu_backward(gate: Any, up: Any, grad: Any, grad_gate: Any, grad_up: Any) -> None:
    """One slice of rows, in fp32, into `grad_gate` and `grad_up`: d silu(x)/dx = s + silu(x)(1 − s), s = sigmoid(x),
    in place on slice-sized buffers of its own (the saved gate and up and the incoming gradient are only read)."""
    wide_grad = grad.float()
    silu = gate.to(torch.float32, copy=True)  # a buffer of its own, even where gate is fp32
    sigmoid = torch.sigmoid(silu)
    silu.mul_(sigmoid)
    grad_up.copy_(silu * wide_grad)
    derivative = silu.addcmul_(silu, sigmoid, value=-1).add_(sigmoid)  # silu − silu·s + s
    grad_gate.copy_(derivative.mul_(wide_grad).mul_(up))


def _lean_norm(self: Any, hidden_states: Any) -> Any:
    return _RmsNorm.apply(hidden_states, self.weight, self.variance_epsilon)  # type: ignore[no-untyped-call]


def _lean_mlp(self: Any, x: Any) -> Any:
    product = _SwiGlu.apply(self.gate_proj(x), self.up_proj(x))  # type: ignore[no-untyped-call]
    return self.down_proj(product)


def use_lean_layers(model: Any) -> int:
    """Replace the RMSNorms and SwiGLU MLPs of `model` that compute what the lean ones do; how many were replaced."""
    agreed: dict[tuple[type, str], bool] = {}  # one probe per layer class
    replaced = 0
    for module in model.modules():
        lean = _lean_form(module)
        if lean is None:
            continue
        key = (type(module), lean.__name__)
        if key not in agreed:
            agreed[key] = _agrees(module, lean)
        if agreed[key]:
            module.forward = types.MethodType(lean, module)
            replaced += 1
    return replaced


def _lean_form(module: Any) -> Any | None:
    if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
        weight = getattr(module, "weight", None)
        return _lean_norm if isinstance(weight, torch.Tensor) and weight.dim() == 1 else None
    if all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return _lean_mlp
    return None


def _agrees(module: Any, lean: Any) -> bool:
    """The module's own forward and the lean one give the same output on a random input of its width (in fp32, where
    both are exact up to the order of operations)."""
    width = module.weight.shape[-1] if lean is _lean_norm else module.gate_proj.in_features
    if not all(p.is_floating_point() for p in module.parameters()):  # a quantized (QLoRA) layer keeps its own
        return False
    parameter = next(module.parameters())
    generator = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.randn(1, PROBE_TOKENS, width, generator=generator).to(parameter.device, parameter.dtype)
    training = module.training
    module.eval()  # no dropout (LoRA's) in the probe
    try:
        with torch.no_grad():
            own = module(probe)
            other = lean(module, probe)
    finally:
        module.train(training)
    if own.shape != other.shape:
        return False
    tolerance = 1e-5 if parameter.dtype == torch.float32 else 2e-2
    return bool(torch.allclose(own.float(), other.float(), rtol=tolerance, atol=tolerance))
