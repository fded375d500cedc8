"""`ftcli/tiny`: a small causal LM built on the spot, so users and CI can run the whole loop offline in seconds.

Its tokenizer needs no downloaded files (byte-level: 256 byte tokens + ChatML special tokens). A purely random
model learns poorly under LoRA, so the base first gets a fixed number of full-training steps on generic chat data of its
own (arithmetic questions), which teaches it the chat format. The result is cached as safetensors.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ftcli.data.local_bases import TINY_CONTEXT, build_tiny_tokenizer
from ftcli.server.weights import save_pretrained_atomically

PRETRAIN_STEPS = 40  # a fixed count, not a time: the same base on every machine


def build_model(vocab_size: int, *, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=TINY_CONTEXT,
        tie_word_embeddings=True,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def generic_chats(count: int, *, seed: int = 0) -> list[list[dict[str, str]]]:
    """Pretraining data unrelated to any user's, available offline everywhere: the first sentences of the Python
    standard library's docstrings (English prose) and arithmetic, in chat form."""
    rng = random.Random(seed)
    sentences = _docstring_sentences()
    chats = []
    for index in range(count):
        if index % 4 == 0 or not sentences:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            question, answer = f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
        else:
            name, sentence = rng.choice(sentences)
            question, answer = f"What does {name} do?", sentence
        chats.append(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        )
    return chats


def _docstring_sentences() -> list[tuple[str, str]]:
    import builtins
    import collections
    import json
    import os
    import pathlib
    import string
    import textwrap

    found = []
    for module in (builtins, os, os.path, json, collections, pathlib, string, textwrap, random):
        for name in dir(module):
            doc = getattr(getattr(module, name, None), "__doc__", None)
            if isinstance(doc, str) and not name.startswith("_"):
                first = " ".join(doc.strip().split("\n\n")[0].split())
                if 20 < len(first) < 160 and first.isascii():
                    found.append((name, first))
    return sorted(set(found))


def ensure_tiny(directory: Path, *, seed: int = 0, steps: int = PRETRAIN_STEPS) -> Path:
    """Build (once) and return the directory of the pretrained tiny base model."""
    if (directory / "model.safetensors").exists():
        return directory
    import torch

    from ftcli.data.chat_template import encode_chat

    tokenizer = build_tiny_tokenizer()
    model = build_model(len(tokenizer), seed=seed)
    examples = [encode_chat(tokenizer, chat) for chat in generic_chats(2048, seed=seed)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = examples[(step * 16) % len(examples) :][:16]
        loss = model(**_collate(batch, tokenizer.pad_token_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_pretrained_atomically(directory, model, tokenizer)
    return directory


def _collate(batch: list[Any], pad_id: int) -> dict[str, Any]:
    from ftcli.server.chat_tokens import collate

    return collate(batch, pad_id)
