"""Token counts per example, the way OpenAI counts chat tokens.

Per message: 3 tokens of framing + the tokens of each string field (role, content, name, tool_call_id) + 1 for
a name; 3 more prime the reply (OpenAI cookbook, `num_tokens_from_messages`). Text parts of list content count
as text; image parts are not counted (their cost depends on pixel size, which ftcli does not decode).
Tool calls count their function name and arguments plus 3; `tools` definitions count as their JSON text
(an estimate: OpenAI renders definitions in an internal format). Trained tokens are the tokens of assistant
messages with weight ≠ 0 (content and tool calls), as the cookbook counts them, and their reasoning
(`reasoning_content` or `reasoning`), which the model writes as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ftcli.data.formats.openai import REASONING_KEYS

if TYPE_CHECKING:
    from ftcli.data.tokenizers import CountingEncoding

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_TOOL_CALL = 3
_CACHE_LIMIT = 4096
_CACHEABLE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ExampleTokens:
    total: int
    trained: int
    messages: int
    left_out_reasoning: str | None = None  # the message whose reasoning a local base's template leaves out (FT321)


class ExampleCounter(Protocol):
    """What `check` counts with: OpenAI's rule (`TokenCounter`), or a local base's own tokenizer and chat template
    (`data/template_tokens.TemplateCounter`)."""

    def chat(self, record: dict[str, Any]) -> ExampleTokens: ...

    def preference(self, record: dict[str, Any]) -> ExampleTokens: ...

    def special_tokens_in(self, text: str) -> list[str]: ...


class TokenCounter:
    """Counts tokens of strings with one encoding, by the cookbook's rule for chats.

    Strings that repeat across examples (role names, system prompts) are counted once: a small cache, cleared
    when full, keeps memory flat however large the file is. User and assistant texts rarely repeat, so they
    bypass the cache (hashing and storing them would cost more than it saves).
    """

    def __init__(self, encoding: CountingEncoding) -> None:
        self.count = encoding.count
        self._cache: dict[str, int] = {}
        self.special_tokens = tuple(sorted(encoding.special_tokens_set))

    def count_repeated(self, text: str) -> int:
        """`count` for strings likely to repeat across examples."""
        if len(text) > _CACHEABLE_CHARS:
            return self.count(text)
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            cached = self._cache[text] = self.count(text)
        return cached

    def special_tokens_in(self, text: str) -> list[str]:
        if "<|" not in text:
            return []
        return [token for token in self.special_tokens if token in text]

    # -- examples ---------------------------------------------------------------------------------------

    def chat(self, record: dict[str, Any]) -> ExampleTokens:
        messages = record.get("messages")
        total = REPLY_PRIMING + self._tools(record)
        trained = counted = 0
        count, count_repeated = self.count, self.count_repeated
        for message in messages if type(messages) is list else ():
            if type(message) is not dict:
                continue
            counted += 1
            if len(message) == 2:  # inline fast path: the common {role, content: text} message, once per message
                role, content = message.get("role"), message.get("content")
                if type(role) is str and type(content) is str:
                    body = count_repeated(content) if role == "system" or role == "developer" else count(content)
                    total += TOKENS_PER_MESSAGE + count_repeated(role) + body
                    if role == "assistant":
                        trained += body
                    continue
            message_total, message_trained = self._message(message)
            total += message_total
            trained += message_trained
        return ExampleTokens(total=total, trained=trained, messages=counted)

    def preference(self, record: dict[str, Any]) -> ExampleTokens:
        """DPO trains on prompt+preferred and prompt+non-preferred: the prompt is processed twice."""
        data = record.get("input")
        prompt = self.chat(data) if isinstance(data, dict) else ExampleTokens(REPLY_PRIMING, 0, 0)
        total = 2 * prompt.total
        trained = 0
        for key in ("preferred_output", "non_preferred_output"):
            for message in _messages(record.get(key)):
                message_total, message_trained = self._message(message, force_trained=True)
                total += message_total
                trained += message_trained
        return ExampleTokens(total=total, trained=trained, messages=prompt.messages + 1)

    def _message(self, message: dict[str, Any], *, force_trained: bool = False) -> tuple[int, int]:
        """(tokens, trained tokens) of one message."""
        total = TOKENS_PER_MESSAGE
        body = 0  # tokens of what the model says: content and calls
        for key, value in message.items():
            if key == "content":
                body += self._content(value)
            elif key in REASONING_KEYS and isinstance(value, str):
                body += self.count(value)  # the model writes its reasoning too: trained, and billed
            elif key in ("role", "name", "tool_call_id", "refusal") and isinstance(value, str):
                total += self.count_repeated(value) + (TOKENS_PER_NAME if key == "name" else 0)
            elif key == "tool_calls" and isinstance(value, list):
                body += sum(self._call(c.get("function")) + TOKENS_PER_TOOL_CALL for c in value if isinstance(c, dict))
            elif key == "function_call":
                body += self._call(value)
        trained_role = message.get("role") == "assistant" and message.get("weight", 1) != 0
        return total + body, body if trained_role or force_trained else 0

    def _content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.count(content)
        if isinstance(content, list):
            return sum(
                self.count(part["text"])
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        return 0

    def _call(self, function: Any) -> int:
        if not isinstance(function, dict):
            return 0
        return sum(self.count(function[k]) for k in ("name", "arguments") if isinstance(function.get(k), str))

    def _tools(self, record: dict[str, Any]) -> int:
        definitions = record.get("tools") or record.get("functions")
        if not isinstance(definitions, list) or not definitions:
            return 0
        return self.count_repeated(json.dumps(definitions, ensure_ascii=False))


def _messages(value: Any) -> list[dict[str, Any]]:
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def iter_texts(record: Any) -> list[tuple[str, str]]:
    """Every string a model would read or write in a record, with its JSON path (for PII and special tokens)."""
    found: list[tuple[str, str]] = []
    _walk(record, "", found)
    return found


def _walk(value: Any, path: str, found: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        found.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("role", "type", "id", "tool_call_id", "weight"):
                _walk(item, f"{path}.{key}" if path else key, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", found)
