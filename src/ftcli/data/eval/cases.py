"""Eval cases from chat JSONL (a training or validation file, or the golden answers of `ftcli export --golden`): each
record's messages before its last assistant message are the prompt, and that message (its text and its tool calls) is
the reference. For OpenAI graders (`eval --grader-file`) a reinforcement record is a case too: its messages end with
the prompt, it has no reference, and the grader reads the record's fields as `{{item.FIELD}}`. Lines that hold no
usable case are reported with their line and why, as `check` does. Golden answers' prompts (`read_prompts`) come from
the same kind of file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.data.errors import DataError
from ftcli.data.formats.openai import PROMPT_ROLES, record_kind
from ftcli.data.rules.records import record_errors


@dataclass(frozen=True, slots=True)
class EvalCase:
    line: int
    prompt: list[dict[str, Any]]  # the messages before the reference
    reference: str  # the reference answer's text ("" when it only calls tools)
    reference_calls: list[dict[str, Any]] = field(default_factory=list)  # its tool calls: {"name", "arguments"}
    tools: list[Any] | None = None
    item: dict[str, Any] = field(default_factory=dict)  # the whole record: what an OpenAI grader reads as {{item.x}}
    prompt_only: bool = False  # a reinforcement record: no reference, so only OpenAI graders apply

    @property
    def key(self) -> str:
        """What an answer depends on (prompt and tools): the cache's key for one model and its settings."""
        text = json.dumps([self.prompt, self.tools], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str


def read_cases(path: Path, *, prompts: bool = False) -> tuple[list[EvalCase], list[Problem]]:
    """Every usable case, and every line that isn't one (with its line number and the reason). `prompts`: records
    that end with their prompt (reinforcement records, for OpenAI graders) are cases too, without a reference."""
    cases: list[EvalCase] = []
    problems: list[Problem] = []
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(number, f"not JSON ({exc})"))
            continue
        case = _case(record, number, problems, prompts=prompts)
        if case is not None:
            cases.append(case)
    return cases, problems


def text_cases(path: Path) -> list[EvalCase]:
    """The cases of a file whose every line must be one with a reference text (`chat --eval`): the first line that
    isn't is refused, naming it."""
    cases, problems = read_cases(path)
    problems += [Problem(c.line, "the last assistant message has no text to compare against") for c in cases
                 if not c.reference and c.reference_calls]  # fmt: skip
    if problems:
        first = min(problems, key=lambda problem: problem.line)
        raise DataError(f"{path}:{first.line}: {first.message}", hint=f"run `ftcli check {path}`")
    if not cases:
        raise DataError(f"{path} has no examples")
    return cases


def read_prompts(path: Path) -> list[list[dict[str, Any]]]:
    """Each line's messages up to its last user message (so a training file works as a prompt set): the prompts of
    golden answers. A line that has none is refused, naming it."""
    prompts = []
    for number, line in _lines(path):
        try:
            messages = json.loads(line)["messages"]
            last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DataError(
                f"{path}:{number}: not a chat example with a user message", hint=f"run `ftcli check {path}`"
            ) from None
        prompts.append(messages[: last_user + 1])
    if not prompts:
        raise DataError(f"{path} has no prompts")
    return prompts


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that isn't blank."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _case(record: Any, number: int, problems: list[Problem], *, prompts: bool = False) -> EvalCase | None:
    if not isinstance(record, dict) or record_kind(record) != "chat":
        problems.append(Problem(number, "not a chat record (an object with 'messages')"))
        return None
    if prompts and _ends_with_prompt(record):
        return _prompt_case(record, number, problems)
    errors = record_errors(record, "chat")
    if errors:
        problems.append(Problem(number, f"{errors[0].code} {errors[0].message}"))
        return None
    messages = record["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None or last == 0:
        problems.append(Problem(number, "no assistant message after a prompt to compare against"))
        return None
    reference = messages[last]
    content = reference.get("content")
    calls = [_call(c) for c in reference.get("tool_calls") or [] if isinstance(c, dict)]
    if not isinstance(content, str) and not calls:
        problems.append(Problem(number, "the last assistant message has neither text nor tool calls"))
        return None
    prompt = [{k: v for k, v in m.items() if k != "weight"} for m in messages[:last]]
    text = content if isinstance(content, str) else ""
    return EvalCase(number, prompt, text, calls, record.get("tools"), item=record)


def _ends_with_prompt(record: dict[str, Any]) -> bool:
    messages = record.get("messages")
    return (
        isinstance(messages, list)
        and bool(messages)
        and isinstance(messages[-1], dict)
        and (messages[-1].get("role") in PROMPT_ROLES)
    )


def _prompt_case(record: dict[str, Any], number: int, problems: list[Problem]) -> EvalCase | None:
    """A reinforcement record as a case: all its messages are the prompt; the grader judges the answer by itself."""
    errors = record_errors(record, "reinforcement")
    if errors:
        problems.append(Problem(number, f"{errors[0].code} {errors[0].message}"))
        return None
    prompt = [{k: v for k, v in m.items() if k != "weight"} for m in record["messages"]]
    return EvalCase(number, prompt, "", [], record.get("tools"), item=record, prompt_only=True)


def _call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    return {"name": function.get("name"), "arguments": function.get("arguments")}
