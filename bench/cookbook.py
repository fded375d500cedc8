"""The OpenAI cookbook's data-preparation algorithm, as the baseline `check` is measured against.

Parse every line into memory, run the format checks, then tokenize every message value and every assistant
message again, in one process (openai-cookbook: "Data preparation and analysis for chat model fine-tuning").
The encoding is passed in so both sides count with the same one.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def num_tokens_from_messages(encoding: Any, messages: list[dict[str, Any]]) -> int:
    num_tokens = 0
    for message in messages:
        num_tokens += 3
        for key, value in message.items():
            num_tokens += len(encoding.encode(value))
            if key == "name":
                num_tokens += 1
    return num_tokens + 3


def num_assistant_tokens_from_messages(encoding: Any, messages: list[dict[str, Any]]) -> int:
    return sum(len(encoding.encode(m["content"])) for m in messages if m["role"] == "assistant")


def run(path: str, encoding: Any) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]
    format_errors: dict[str, int] = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1
    n_messages, convo_lens, assistant_message_lens = [], [], []
    n_missing_system = n_missing_user = 0
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(encoding, messages))
        assistant_message_lens.append(num_assistant_tokens_from_messages(encoding, messages))
    return {"examples": len(dataset), "tokens": sum(convo_lens), "errors": dict(format_errors)}


if __name__ == "__main__":
    from ftcli.data.tokenizers import get_encoding

    print(json.dumps(run(sys.argv[1], get_encoding(sys.argv[2]))))
