"""What the local backend can't train, found when `ftcli serve` validates a job's files (after `check`), before it
trains: images (it trains text models only, yet), reasoning its base's chat template has no place for, and answers
the template can't label (`data/chat_template.ChatTemplateError`). Such a job fails validation with words naming
the lines, the base and why; it is never trained as if the images or the reasoning weren't there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.data.chat_template import ChatTemplateError, encode_chat, encode_preference, renders_reasoning
from ftcli.data.formats.openai import message_reasoning, record_kind

MAX_PROBLEMS = 3  # as many as a refused job's message names of check's errors


@dataclass
class _Seen:
    """Examples of a kind the local backend can't train: how many, and where the first is."""

    examples: int = 0
    first: str = ""

    def add(self, where: str) -> None:
        self.examples += 1
        self.first = self.first or where

    def __str__(self) -> str:
        return f"{self.examples:,} example{'s' * (self.examples != 1)} (the first: {self.first})"


def untrainable_locally(path: Path, model: str, *, tokenizer: Callable[[], Any] | None = None) -> list[str]:
    """Why the local backend can't train `model` on the file at `path` as it is (empty when it can). `tokenizer`
    loads the base's (default: `local_base(model)`'s, once, only if an example needs it); None when it can't be
    loaded here, and then training's own encoder refuses what its template can't render."""
    loaded = _Once(tokenizer or (lambda: _base_tokenizer(model)))
    has_a_place = _Once(lambda: loaded() is not None and renders_reasoning(loaded()))
    images, reasoning = _Seen(), _Seen()
    problems: list[str] = []
    for line, record in _records(path):
        messages = _messages(record)
        image = next(_images(messages), None)
        if image is not None:
            images.add(f"line {line}, {image}")
            continue
        carries_reasoning = any(message_reasoning(m) is not None for _, m in messages if m.get("role") == "assistant")
        if carries_reasoning:
            reasoning.add(f"line {line}")
            if not has_a_place():
                continue  # said once, below
        trained = sum(1 for _, m in messages if m.get("role") == "assistant" and m.get("weight", 1) != 0)
        if (carries_reasoning or trained > 1) and len(problems) < MAX_PROBLEMS and loaded() is not None:
            problem = _encoding_problem(loaded(), record)
            if problem is not None:
                problems.append(f"line {line}: {problem}")
    refusals = []
    if images.examples:
        refusals.append(
            f"{images} hold images: the local backend does not train vision models yet (it would learn from the "
            "text alone); leave the images out, or train on a backend that takes them"
        )
    if reasoning.examples and loaded() is not None and not has_a_place():
        refusals.append(
            f"{reasoning} carry reasoning, and {model}'s chat template has no place for it (it renders no "
            "reasoning_content), so it would not be trained: train a base whose template renders reasoning "
            "(a Qwen3-style thinking model), or leave the reasoning out"
        )
    return refusals + problems


class _Once:
    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._loaded = False
        self._value: Any = None

    def __call__(self) -> Any:
        if not self._loaded:
            self._value, self._loaded = self._load(), True
        return self._value


def _base_tokenizer(model: str) -> Any:
    from ftcli.data.local_bases import local_base

    try:
        base = local_base(model)
    except Exception:  # noqa: BLE001 (a base whose tokenizer can't load here: the job's worker says why)
        return None
    return base.tokenizer if base is not None else None


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's records by line number (check has refused any line that isn't one already)."""
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(record, dict):
                yield line, record


def _messages(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every message of a chat or preference record, with its path in the record."""
    if record_kind(record) == "chat":
        groups = {"messages": record.get("messages")}
    else:
        data = record.get("input")
        prompt = data.get("messages") if isinstance(data, dict) else None
        groups = {
            "input.messages": prompt,
            "preferred_output": record.get("preferred_output"),
            "non_preferred_output": record.get("non_preferred_output"),
        }
    return [
        (f"{key}[{index}]", message)
        for key, group in groups.items()
        if isinstance(group, list)
        for index, message in enumerate(group)
        if isinstance(message, dict)
    ]


def _images(messages: list[tuple[str, dict[str, Any]]]) -> Iterator[str]:
    for where, message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    yield f"{where}.content[{index}]"


def _encoding_problem(tokenizer: Any, record: dict[str, Any]) -> str | None:
    try:
        if record_kind(record) == "chat":
            encode_chat(tokenizer, record.get("messages") or [], tools=record.get("tools"))
        else:
            encode_preference(tokenizer, record)
    except ChatTemplateError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 (what check reported already, or the template's own error at training)
        return None
    return None
