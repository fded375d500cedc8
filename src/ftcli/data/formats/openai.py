"""OpenAI's fine-tuning record formats, described once: the supervised chat format, the preference (DPO) format, the
reinforcement (RFT) prompt format and the legacy prompt/completion format — their keys, roles and limits, and how a
record's kind is told. `check`'s rules
(data/rules/records.py) judge records by this description, and `convert` refuses to write a record those rules find
an error in, so the two can't disagree."""

from __future__ import annotations

from typing import Any, Literal

RecordKind = Literal["chat", "preference", "reinforcement", "legacy", "unknown"]
Method = Literal["sft", "dpo", "reinforcement"]
METHODS: tuple[Method, ...] = ("sft", "dpo", "reinforcement")

CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
# A reinforcement (RFT) record is `messages` ending with the prompt (the model writes the answer, a grader scores it),
# with `tools` where the model may call them. These two are its only reserved keys: every other top-level field is
# the grader's data about the item (`{{item.<field>}}`), such as a reference answer.
REINFORCEMENT_KEYS = frozenset({"messages", "tools"})
PROMPT_ROLES = frozenset({"user", "developer"})  # the roles a reinforcement record's last message may have
LEGACY_KEYS = frozenset({"prompt", "completion"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})  # roles a {role, content} message may have
MESSAGE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {
            "role",
            "content",
            "name",
            "weight",
            "tool_calls",
            "function_call",
            "refusal",
            "reasoning_content",
            "reasoning",
        }
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
# An assistant message's reasoning (chain of thought), apart from its answer in `content`. OpenAI's chat format has no
# such field (its models keep their reasoning hidden); vLLM, SGLang and DeepSeek answer `reasoning_content`, which is
# also the field Qwen3-style chat templates render inside <think>; Together's training files take `reasoning` or
# `reasoning_content`. `convert` writes `reasoning_content`; `check` and the backends read either.
REASONING_KEY = "reasoning_content"
REASONING_KEYS = (REASONING_KEY, "reasoning")
MAX_IMAGES_PER_EXAMPLE = 64
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_MEDIA_TYPES = ("data:image/jpeg;", "data:image/jpg;", "data:image/png;", "data:image/webp;")
FORMAT_NAMES: dict[RecordKind, str] = {
    "chat": "chat (SFT)",
    "preference": "preference (DPO)",
    "reinforcement": "prompt (RFT)",
    "legacy": "prompt/completion",
    "unknown": "unknown",
}


def record_kind(record: dict[str, Any], method: str | None = None) -> RecordKind:
    """The one place a record's format is told from its keys. A `messages` record is a chat example, or under
    `--method reinforcement` a prompt with the grader's item fields (the two share their keys; the method tells)."""
    if "messages" in record:
        return "reinforcement" if method == "reinforcement" else "chat"
    if "preferred_output" in record or "non_preferred_output" in record or isinstance(record.get("input"), dict):
        return "preference"  # any of the DPO keys; a string `input` is Alpaca's, not DPO's
    if not LEGACY_KEYS.isdisjoint(record):
        return "legacy"
    return "unknown"


def message_reasoning(message: dict[str, Any]) -> str | None:
    """The reasoning an assistant message carries, under either name (None when it has none)."""
    for key in REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str):
            return value
    return None


def method_of(kind: RecordKind) -> Method:
    """The training method a file of such records is for."""
    return "dpo" if kind == "preference" else "reinforcement" if kind == "reinforcement" else "sft"


def kind_of(method: str) -> RecordKind:
    return "preference" if method == "dpo" else "reinforcement" if method == "reinforcement" else "chat"
