"""Encoded examples → training batches: padded (`collate`), packed several to a row (`pack`), in seeded orders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ftcli.data.chat_template import IGNORE, EncodedChat

T = TypeVar("T")


def collate(batch: list[EncodedChat], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; `group_by_length` keeps the padding small."""
    import torch

    width = max(len(item.input_ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


PACKED_ROW_TOKENS = 1024  # a packed row's length (longer examples get a row of their own)


def pack(batch: list[EncodedChat], pad_id: int, *, row_tokens: int | None = PACKED_ROW_TOKENS) -> dict[str, Any]:
    """A batch with several examples per row (first-fit decreasing), instead of one padded row each.

    Position ids restart at every example and no attention mask is passed, so transformers builds the attention
    from the positions: block-diagonal causal masks for SDPA and eager attention, variable-length kernels for
    flash-attention; no token sees another example. Each example's first label is ignored, so no token is predicted
    across a boundary either: the loss is the one of the same examples unpacked. The rows' tail is padding, a
    sequence of its own, outside the loss. `row_tokens` None: every example in one row (for attention that splits
    rows at the examples itself, server/packed_attention.py: then there is no padding at all)."""
    import torch

    lengths = [len(item.input_ids) for item in batch]
    capacity = sum(lengths) if row_tokens is None else max(row_tokens, *lengths)
    rows = first_fit(batch, lambda item: len(item.input_ids), capacity)
    loads = [sum(len(item.input_ids) for item in row) for row in rows]
    width = max(loads)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        start = 0
        for item in row:
            end = start + len(item.input_ids)
            ids[index, start:end] = torch.tensor(item.input_ids)
            labels[index, start + 1 : end] = torch.tensor(item.labels[1:])
            positions[index, start:end] = torch.arange(end - start)
            start = end
        positions[index, start:] = torch.arange(width - start)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def first_fit(items: list[T], size: Callable[[T], int], capacity: int) -> list[list[T]]:
    """`items` in groups of at most `capacity` by `size` (first-fit decreasing: few groups, filled evenly); an item
    larger than `capacity` is a group of its own."""
    groups: list[list[T]] = []
    loads: list[int] = []
    for item in sorted(items, key=size, reverse=True):
        length = size(item)
        fits = next((index for index, load in enumerate(loads) if load + length <= capacity), None)
        if fits is None:
            groups.append([item])
            loads.append(length)
        else:
            groups[fits].append(item)
            loads[fits] += length
    return groups


def shuffled_batches(examples: list[Any], batch_size: int, *, seed: int) -> list[list[Any]]:
    """Batches in a seeded random order: with packing, lengths need no grouping."""
    import random

    order = list(examples)
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def group_by_length(examples: list[EncodedChat], batch_size: int, *, seed: int) -> list[list[EncodedChat]]:
    """Batches of similar lengths (little padding), in a seeded random order."""
    import random

    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches
