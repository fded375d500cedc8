"""Tool calls in generated text → OpenAI's `tool_calls`, for requests that offer `tools`.

A model fine-tuned on tool calls writes them the way it was trained: Hermes-style
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (ftcli's rendering for templates without tool support,
and the native format of Qwen's and Hermes' templates). The chat endpoint turns them into structured calls, as
OpenAI's API returns them; streams hold text back from the first `<tool_call>` on.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

OPEN = "<tool_call>"
_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def split_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(the text around the calls, the calls); text that only looks like a call stays text."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _CALL.finditer(text):
        call = _call(match.group(1))
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    kept.append(text[last:])
    return ("".join(kept).strip() if calls else text), calls


def _call(payload: str) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": data["name"], "arguments": arguments},
    }


def safe_prefix_length(text: str) -> int:
    """How much of `text` can be streamed as content now: everything before a `<tool_call>` (or before what could
    still become one at its end)."""
    start = text.find(OPEN)
    if start >= 0:
        return start
    for keep in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-keep:]):
            return len(text) - keep
    return len(text)
