"""What the local backend can't train, found when `ftcli serve` validates a job's files (after `check`), before it
trains: images (it trains text models only, yet), reasoning its base's chat template has no place for, and answers
the template can't label (`data/chat_template.ChatTemplateError`). Such a job fails validation with words naming
the lines, the base and why; it is never trained as if the images or the reasoning weren't there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftcli.data.chat_template import ChatTemplateError, encode_chat, encode_preference, renders_reasoning
from ftcli.data.formats.openai import message_reasoning, record_kind
from ftcli.data.training_content import Seen, image_parts, record_messages, records

MAX_PROBLEMS = 3  # as many as a refused job's message names of check's errors


def untrainable_locally(path: Path, model: str, *, tokenizer: Callable[[], Any] | None = None) -> list[str]:
    """Why the local backend can't train `model` on the file at `path` as it is (empty when it can). `tokenizer`
    loads the base's (default: `local_base(model)`'s, once, only if an example needs it); None when it can't be
    loaded here, and then training's own encoder refuses what its template can't render."""
    loaded = _Once(tokenizer or (lambda: _base_tokenizer(model)))
    has_a_place = _Once(lambda: loaded() is not None and renders_reasoning(loaded()))
    images, reasoning = Seen(), Seen()
    problems: list[str] = []
    with path.open("rb") as handle:
        for line, record in records(handle):
            messages = record_messages(record)
            image = next(image_parts(messages), None)
            if image is not None:
                images.add(f"line {line}, {image}")
                continue
            carries_reasoning = any(
                message_reasoning(m) is not None for _, m in messages if m.get("role") == "assistant"
            )
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
