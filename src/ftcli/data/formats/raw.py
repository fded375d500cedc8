"""Dataset formats that are not OpenAI's training format yet, described once: how a record of each is recognised,
what it is called, and the `ftcli convert` options that turn it into chat (or DPO) records. `convert` picks its preset
here, and `check` names the format and the exact command for a file of such records (or says why none exists)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from ftcli.data.formats.openai import record_kind

KTO_LABELS = ("label", "kto_tag")  # LLaMA-Factory's demo names the column `label`; its docs call it `kto_tag`
MEDIA_COLUMNS = ("images", "videos", "audios")


@dataclass(frozen=True, slots=True)
class SourceFormat:
    name: str  # "alpaca", "kto", "llamafactory-v1", "openai", ...
    description: str  # what a person recognises: "Alpaca records {instruction, input, output}"
    preset: str | None  # the convert preset; None where no conversion to chat exists
    options: tuple[str, ...] = ()  # further convert options it needs
    why_not: str | None = None  # where preset is None: why there is no conversion

    @property
    def ready(self) -> bool:
        """Already OpenAI's training format (chat, DPO or the legacy prompt/completion that FT102 covers)."""
        return self.name in ("openai", "prompt-completion")

    def command(self, file: str, output: str) -> str | None:
        if self.preset is None:
            return None
        words = ["ftcli", "convert", file, "-o", output, "--preset", self.preset, *self.options]
        return " ".join(shell_word(word) for word in words)


def shell_word(word: str) -> str:
    """`word` as a shell reads it back: bare where it is plain (any script's letters too), else quoted."""
    return word if word and all(c.isalnum() or c in "@%+=:,./-_" for c in word) else shlex.quote(word)


def converted_name(file: str) -> str:
    """Where the suggested `convert` command writes: beside the file, `data.json` → `data.chat.jsonl`."""
    path = PurePath(file)
    return str(path.with_name(f"{path.stem or 'data'}.chat.jsonl"))


OPENAI = SourceFormat("openai", "OpenAI chat or DPO records", "openai")
CHAT = SourceFormat("openai", "chat records {messages}", "openai")
LEGACY = SourceFormat("prompt-completion", "legacy prompt/completion records {prompt, completion}", "prompt-completion")
CHATLAW = SourceFormat("chatlaw", "ChatLaw records {meta_instruction, chat}", "chatlaw")
SHAREGPT = SourceFormat("sharegpt", "ShareGPT records {conversations: [{from, value}]}", "sharegpt")
ALPACA = SourceFormat("alpaca", "Alpaca records {instruction, input, output}", "alpaca")
V1 = SourceFormat(
    "llamafactory-v1", "LLaMA-Factory v1 records (content parts {type, value}, loss_weight)", "llamafactory-v1"
)
V1_PREFERENCE = SourceFormat(
    "llamafactory-v1", "LLaMA-Factory v1 preference records {chosen_messages, rejected_messages}", "llamafactory-v1"
)
TEXT = SourceFormat(
    "text",
    'Together\'s plain-text records {"text": …}',
    None,
    why_not="plain text has no roles, so there is no conversation to convert it to; it trains only on Together, "
    "as it is",
)


def kto(base: SourceFormat, label: str) -> SourceFormat:
    return SourceFormat(
        "kto",
        f"binary-feedback (KTO) records: {base.description} with a true/false {label!r}",
        base.preset,
        ("--kto-to", "dpo"),
    )


def multimodal(base: SourceFormat, column: str) -> SourceFormat:
    if column != "images":
        return SourceFormat(
            "multimodal",
            f"{base.description} with {column}",
            None,
            why_not=f"OpenAI's chat format has no place for {column.removesuffix('s')}",
        )
    return SourceFormat("multimodal", f"{base.description} with an images list and <image> placeholders", base.preset)


def detect_format(record: Any) -> SourceFormat | None:
    """The format a raw record is in; None for a record of no format ftcli knows."""
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return _extended(record, CHAT if not _has_v1_parts(record["messages"]) else V1)
    if record_kind(record) == "preference":
        return OPENAI
    if "chosen_messages" in record or "rejected_messages" in record:
        return V1_PREFERENCE
    if "meta_instruction" in record and "chat" in record:
        return CHATLAW
    if "conversations" in record:
        return _extended(record, SHAREGPT)
    if "instruction" in record and "output" in record:
        return _extended(record, ALPACA)
    if "prompt" in record and "completion" in record:
        return LEGACY
    if isinstance(record.get("text"), str):
        return TEXT
    return None


def unconverted(record: Any) -> SourceFormat | None:
    """A raw format `convert` must turn into OpenAI's first; None for OpenAI records and records of no known format."""
    found = detect_format(record)
    return None if found is None or found.ready else found


def kto_label(record: dict[str, Any]) -> tuple[str, bool] | None:
    """(column, value) of a binary-feedback label: a JSON boolean, or its text in any case (CSV and TSV have no
    booleans: `True`, `false`); in `kto_tag`, whose name says what it is, also 1 and 0. (A `label` of 0/1 may be a
    class to train on, mapped with --map.)"""
    for key in KTO_LABELS:
        value = record.get(key)
        if isinstance(value, bool):
            return key, value
        text = str(value).strip().lower() if isinstance(value, str | int) else None
        if text in ("true", "false"):
            return key, text == "true"
        if key == "kto_tag" and text in ("1", "0"):
            return key, text == "1"
    return None


def _extended(record: dict[str, Any], base: SourceFormat) -> SourceFormat:
    """`base` itself, or with the columns that make it KTO or multimodal data."""
    label = kto_label(record)
    if label is not None:
        return kto(base, label[0])
    for column in MEDIA_COLUMNS:
        if record.get(column):
            return multimodal(base, column)
    return OPENAI if base is CHAT else base


def _has_v1_parts(messages: Any) -> bool:
    """LLaMA-Factory v1 messages: content parts with a `value` (OpenAI's have `text`), or a per-message loss_weight."""
    if type(messages) is not list:
        return False
    for message in messages:
        if type(message) is not dict:
            continue
        if "loss_weight" in message:
            return True
        content = message.get("content")
        if type(content) is list and any(type(p) is dict and "value" in p and "text" not in p for p in content):
            return True
    return False
