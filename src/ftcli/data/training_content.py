"""What a training file holds that not every backend trains as written: images (`image_url` parts), reasoning (an
assistant message's `reasoning_content` or `reasoning`), and reasoning on an answer that is not its conversation's
last one, which Together does not train (it trains a reasoning conversation's last answer only) and Qwen3-style
templates leave out before the last user message. Read once, before anything is sent: the local backend's
validation (`data/local_training.py`) and the Together backend decide from it. Pure: lines of bytes in."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.data.formats.openai import message_reasoning, record_kind


@dataclass
class Seen:
    """Examples of one kind: how many, and where the first is."""

    examples: int = 0
    first: str = ""

    def add(self, where: str) -> None:
        self.examples += 1
        self.first = self.first or where

    def __str__(self) -> str:
        return f"{self.examples:,} example{'s' * (self.examples != 1)} (the first: {self.first})"


@dataclass
class TrainingContent:
    images: Seen = field(default_factory=Seen)
    reasoning: Seen = field(default_factory=Seen)
    earlier_reasoning: Seen = field(default_factory=Seen)  # reasoning on an answer before the conversation's last


def training_content(lines: Iterable[bytes]) -> TrainingContent:
    """What the JSONL `lines` hold (lines that are no record are `check`'s business, and skipped here)."""
    content = TrainingContent()
    for line, record in records(lines, mentioning=(b"image_url", b"reasoning")):
        messages = record_messages(record)
        image = next(image_parts(messages), None)
        if image is not None:
            content.images.add(f"line {line}, {image}")
        if any(message_reasoning(m) is not None for _, m in messages if m.get("role") == "assistant"):
            content.reasoning.add(f"line {line}")
        earlier = earlier_reasoning(record)
        if earlier is not None:
            content.earlier_reasoning.add(f"line {line}, {earlier}")
    return content


def file_content(*paths: Path) -> TrainingContent:
    """`training_content` of the files, together (a training file and its validation file)."""
    total = TrainingContent()
    for path in paths:
        with path.open("rb") as handle:
            found = training_content(handle)
        for mine, theirs in ((total.images, found.images), (total.reasoning, found.reasoning),
                             (total.earlier_reasoning, found.earlier_reasoning)):  # fmt: skip
            mine.examples += theirs.examples
            mine.first = mine.first or (f"{path.name} {theirs.first}" if theirs.first else "")
    return total


def earlier_reasoning(record: dict[str, Any]) -> str | None:
    """The path of the first answer whose reasoning is not the trained answer's: in a chat, on an assistant message
    before the last one; in a preference record, on an assistant message of the prompt. None where there is none."""
    if record_kind(record) == "chat":
        group, key = record.get("messages"), "messages"
    else:
        data = record.get("input")
        group, key = (data.get("messages") if isinstance(data, dict) else None), "input.messages"
    if not isinstance(group, list):
        return None
    answers = [i for i, m in enumerate(group) if isinstance(m, dict) and m.get("role") == "assistant"]
    if key == "messages":
        answers = answers[:-1]  # the last answer is the trained one
    return next((f"{key}[{i}]" for i in answers if message_reasoning(group[i]) is not None), None)


def records(lines: Iterable[bytes], *, mentioning: tuple[bytes, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects among `lines`, by line number; with `mentioning`, only those whose line holds one of these
    words (a test on the bytes first, so a plain file is read at the speed of the disk, as `check`'s lint does)."""
    for line, raw in enumerate(lines, start=1):
        if mentioning and not any(word in raw for word in mentioning):
            continue
        try:
            record = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(record, dict):
            yield line, record


def record_messages(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
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


def image_parts(messages: list[tuple[str, dict[str, Any]]]) -> Iterator[str]:
    """The paths of the image parts among `messages`."""
    for where, message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    yield f"{where}.content[{index}]"
