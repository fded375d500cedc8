"""One description of OpenAI's record formats (data/formats/openai.py): `check` and `convert` judge a record the same
way, and a record's kind is told in one place."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.convert.pipeline import ConvertOptions, convert_text
from ftcli.data.formats.openai import record_kind

SYSTEM = {"role": "system", "content": "You answer briefly."}
USER = {"role": "user", "content": "What is 2 + 2?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}
REPLY = {"role": "tool", "tool_call_id": "call_1", "content": "4"}


def _convert(records: list[dict[str, object]]) -> tuple[list[dict[str, object]], list[str]]:
    text = "".join(json.dumps(r) + "\n" for r in records)
    lines, result = convert_text(text, name="in.jsonl", options=ConvertOptions(preset="openai"))
    return [json.loads(line) for line in lines], [s.reason for s in result.skipped]


def _check_errors(records: list[dict[str, object]], write_jsonl: Callable[..., Path]) -> list[set[str]]:
    """The error codes `check` finds on each record's line (file-level ones, such as too few examples, aside)."""
    report = check_file(write_jsonl(records), options=CheckOptions(model="gpt-4.1-mini-2025-04-14"))
    errors = [d for d in report.diagnostics if d.severity.value == "error" and d.line is not None]
    return [{d.code for d in errors if d.line == line} for line in range(1, len(records) + 1)]


def test_what_check_accepts_convert_writes(write_jsonl: Callable[..., Path]) -> None:
    # refusal, function_call and functions are OpenAI's: accepted by check, and (now) by convert alike
    accepted = [
        {"messages": [SYSTEM, USER, {"role": "assistant", "content": None, "refusal": "I can't help with that."}]},
        {
            "messages": [SYSTEM, USER, {"role": "assistant", "function_call": {"name": "add", "arguments": "{}"}}],
            "functions": [{"name": "add", "parameters": {"type": "object"}}],
        },
        {"messages": [SYSTEM, USER, {"role": "assistant", "tool_calls": [CALL]}, REPLY,
                      {"role": "assistant", "content": "4", "weight": 1}]},
    ]  # fmt: skip
    assert _check_errors(accepted, write_jsonl) == [set(), set(), set()]
    written, skipped = _convert(accepted)
    assert skipped == [] and len(written) == 3
    assert written[0]["messages"][2] == {"role": "assistant", "refusal": "I can't help with that."}  # nulls dropped


def test_what_check_refuses_convert_refuses_with_the_same_rule_and_field(write_jsonl: Callable[..., Path]) -> None:
    broken_call = {**CALL, "function": {"name": "add", "arguments": "{not json"}}
    refused = [
        {"messages": [SYSTEM, USER, {"role": "assistant", "tool_calls": [broken_call]}]},
        {"messages": [SYSTEM, USER, {"role": "assistant", "content": "4", "weight": 2}]},
        {"messages": [SYSTEM, USER, {"role": "robot", "content": "4"}]},
    ]
    assert _check_errors(refused, write_jsonl) == [{"FT210"}, {"FT206"}, {"FT201", "FT204"}]
    written, skipped = _convert(refused)
    assert written == []
    assert "FT210" in skipped[0] and "messages[2].tool_calls[0].function.arguments" in skipped[0]
    assert "FT206" in skipped[1] and "messages[2].weight" in skipped[1]
    assert "FT201" in skipped[2]


def test_a_records_kind_is_told_in_one_place(write_jsonl: Callable[..., Path]) -> None:
    assert record_kind({"messages": []}) == "chat"
    assert record_kind({"non_preferred_output": []}) == "preference"  # any of the DPO keys, not only two of them
    assert record_kind({"prompt": "a", "completion": "b"}) == "legacy"
    assert record_kind({"text": "a"}) == "unknown"
    # check takes the file's method from its first record by the same rule: a DPO record missing its `input` is
    # judged as DPO (a missing input), not as a chat record without messages
    path = write_jsonl([{"preferred_output": [{"role": "assistant", "content": "yes"}],
                         "non_preferred_output": [{"role": "assistant", "content": "no"}]}])  # fmt: skip
    codes = {d.code for d in check_file(path).diagnostics}
    assert "FT130" in codes and "FT110" not in codes
