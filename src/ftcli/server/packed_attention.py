"""Attention for packed rows without a block-diagonal mask: each example of a row attends causally to itself only,
computed one example at a time (issue 30).

A packed row holds several examples whose position ids restart at 0. Given SDPA, transformers builds a
(row × row) mask that blocks attention across examples, and the kernel then computes every pair of the row and
throws most away: for eight examples in a row that is eight times the work, and a mask per layer. Here the row is
split at the restarts and each piece goes to SDPA with `is_causal` and no mask — the same result, the work and memory
of the examples alone (flash-attention's variable-length kernels do this on GPUs; this is its portable form). A batch
with a padding mask (DPO's padded pairs) goes to transformers' own SDPA unchanged.

Only for bases whose attention is plain causal attention (SmolLM2, Llama, Qwen, Mistral and the like): a model type
with soft-capped logits, attention sinks or bidirectional parts keeps transformers' SDPA (`supported`).
"""

from __future__ import annotations

from typing import Any

NAME = "ftcli_packed_sdpa"
# decoder-only model types whose attention is causal softmax attention with at most a sliding window
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo2", "granite"})

_registered = False
_bounds_of: tuple[Any, list[list[tuple[int, int]]]] | None = None  # (position ids, their examples): one per forward


def supported(config: Any) -> bool:
    return getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES and not getattr(
        config, "attn_logit_softcapping", None
    )


def use_packed_attention(model: Any) -> bool:
    """Switch `model` (a transformers model, or peft's wrapper of one) to packed attention where its attention is
    plain causal attention; False (nothing changed) elsewhere."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not supported(base.config):
        return False
    _register()
    base.set_attn_implementation(NAME)
    return True


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def mask(**kwargs: Any) -> Any:
        # no padding mask (packed rows): none is built, the attention splits the rows itself; a padded batch gets
        # the mask transformers' SDPA gets (transformers passes every argument by name)
        return None if kwargs.get("attention_mask") is None else sdpa_mask(**kwargs)

    AttentionInterface.register(NAME, packed_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, mask)
    _registered = True


def packed_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature: query (batch, heads, length, dim), key and value (batch, kv heads,
    length, dim); returns (batch, length, heads, dim)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)  # Mistral, Qwen2 pass it
    rows = []
    for row, examples in enumerate(_examples(position_ids)):
        pieces = []
        for start, end in examples:
            q, k, v = (t[row : row + 1, :, start:end] for t in (query, key, value))
            local = None
            if window and end - start > window:  # a sliding window shorter than the example: masked explicitly
                n = end - start
                causal = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
                local = causal.triu(-(window - 1))[None, None]
            piece, _ = sdpa_attention_forward(
                module, q, k, v, local, dropout=dropout, scaling=scaling, is_causal=local is None
            )
            pieces.append(piece)
        rows.append(torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0])
    return (torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]), None


def _examples(position_ids: Any) -> list[list[tuple[int, int]]]:
    """Each row's examples as (start, end): a new one wherever the position does not follow on. Worked out once per
    forward pass (every layer gets the same position ids) and read on the host once."""
    global _bounds_of
    if _bounds_of is not None and _bounds_of[0] is position_ids:
        return _bounds_of[1]
    import torch

    width = position_ids.shape[-1]
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    found: list[list[tuple[int, int]]] = []
    for row in starts.cpu().tolist():
        begins = [index for index, start in enumerate(row) if start]
        found.append(list(zip(begins, [*begins[1:], width], strict=True)))
    _bounds_of = (position_ids, found)
    return found
