"""Record and message rules (FT1xx, FT2xx) for OpenAI's chat, DPO and reinforcement (RFT) formats and the legacy
format.

Each function takes a parsed JSON value and yields `Finding`s with a JSON path; the engine stamps line and
severity. They never raise on odd input: anything a JSON parser can produce is handled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ftcli.data.diagnostics import Applicability, Finding, Fix, Severity
from ftcli.data.formats.openai import (
    CHAT_KEYS,
    FORMAT_NAMES,
    IMAGE_MEDIA_TYPES,
    MAX_IMAGE_BYTES,
    MAX_IMAGES_PER_EXAMPLE,
    MESSAGE_KEYS,
    PLAIN_ROLES,
    PREFERENCE_INPUT_KEYS,
    PREFERENCE_KEYS,
    PROMPT_ROLES,
    REASONING_KEYS,
    ROLES,
    RecordKind,
    method_of,
    record_kind,
)
from ftcli.data.formats.raw import LEGACY, SourceFormat, unconverted
from ftcli.data.rules.lines import lone_surrogates
from ftcli.data.rules.registry import RULES

__all__ = ["check_record", "format_mismatch", "record_errors", "record_kind"]


# A rule's fix names the file as FILE and the output as OUT.jsonl; the engine puts in the file's own name (dataset.py).
FILE, OUTPUT = "FILE", "OUT.jsonl"
CONVERT_PREFIX = f"ftcli convert {FILE} -o {OUTPUT}"
UNCONVERTED_CODES = ("FT102", "FT105", "FT106", "FT107", "FT110")  # one finding per file (rules/dataset.py)


def check_record(record: dict[str, Any], kind: RecordKind) -> Iterator[Finding]:
    if kind in ("chat", "unknown"):
        raw = unconverted(record)
        if raw is not None:
            yield unconverted_record(raw)
            return
    if kind == "chat":
        yield from _unknown_keys(record, CHAT_KEYS, "")
        yield from check_chat(record, "")
    elif kind == "preference":
        yield from check_preference(record)
    elif kind == "reinforcement":
        yield from check_reinforcement(record)
    elif kind == "legacy":
        yield Finding(
            "FT102",
            "prompt/completion records are not accepted by current chat models",
            fix=Fix(LEGACY.command(FILE, OUTPUT) or "", Applicability.SAFE),
        )
    else:
        keys = ", ".join(sorted(record)[:5]) or "none"
        yield Finding(
            "FT110",
            f"record has no 'messages' (keys: {keys})",
            path="messages",
            fix=Fix(
                f"{CONVERT_PREFIX} --map user=FIELD --map assistant=FIELD (a FIELD may be a template: '{{a}}\\n{{b}}')"
            ),
        )


def unconverted_record(raw: SourceFormat) -> Finding:
    """FT105/FT106/FT107: a record of a dataset format that `convert` must turn into chat records first."""
    if raw.name == "kto":
        return Finding(
            "FT107",
            f"{raw.description}: as chat, the answers labelled false would be trained as targets",
            fix=Fix(f"{raw.command(FILE, OUTPUT)} (pairs desirable and undesirable answers; --kto-to sft keeps only "
                    "the desirable ones)"),
        )  # fmt: skip
    command = raw.command(FILE, OUTPUT)
    if command is None:
        return Finding("FT106" if raw.name == "text" else "FT105", f"{raw.description}: {raw.why_not}")
    return Finding("FT105", f"{raw.description}, not chat records yet", fix=Fix(command, Applicability.SAFE))


def check_chat(record: dict[str, Any], prefix: str, *, conversation: bool | None = None) -> Iterator[Finding]:
    """A chat example (SFT), a DPO `input` or an RFT prompt; `prefix` is the JSON path of the object that holds
    `messages`. `conversation`: whether the messages must hold an answer (default: a whole example's do)."""
    messages = record.get("messages")
    path = f"{prefix}messages"
    if not isinstance(messages, list):
        yield Finding("FT111", f"'messages' must be a list, got {_type(messages)}", path=path)
        return
    if not messages:
        yield Finding("FT111", "'messages' is empty", path=path)
        return
    yield from _check_tools(record, prefix)
    yield from check_messages(messages, path, conversation=not prefix if conversation is None else conversation)


def check_messages(messages: list[Any], path: str, *, conversation: bool = True) -> Iterator[Finding]:
    """`conversation`: a whole example (needs an assistant turn, should have system and user messages);
    False for a DPO prompt or output, which hold only part of one."""
    roles: list[str] = []
    images = 0
    open_calls: dict[str, int] = {}  # tool_call id -> index of the assistant message that made it
    for index, message in enumerate(messages):
        # Fast path for the common plain message {role, content: non-empty text}: nothing else to check.
        if type(message) is dict and len(message) == 2 and type(content := message.get("content")) is str:
            role = message.get("role")
            if role in PLAIN_ROLES and ((content and not content.isspace()) or role in ("system", "developer")):
                roles.append(role)
                continue
        mpath = f"{path}[{index}]"
        if not isinstance(message, dict):
            yield Finding("FT200", f"message must be an object, got {_type(message)}", path=mpath)
            continue
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = "missing" if role is None else repr(role)
            yield Finding("FT201", f"role is {shown}; expected one of {', '.join(sorted(ROLES))}", path=f"{mpath}.role")
            continue
        roles.append(role)
        # FT206 owns weight and FT208 reasoning, on every role
        yield from _unknown_keys(message, MESSAGE_KEYS[role] | {"weight", *REASONING_KEYS}, f"{mpath}.")
        yield from _check_reasoning(message, role, mpath)
        has_call = role == "assistant" and ("tool_calls" in message or "function_call" in message)
        yield from _check_content(message, role, mpath, optional=has_call or "refusal" in message)
        images += _count_images(message.get("content"))
        if "name" in message and (not isinstance(message["name"], str) or not message["name"]):
            yield Finding("FT207", "'name' must be a non-empty string", path=f"{mpath}.name")
        if "weight" in message:
            yield from _check_weight(message["weight"], role, f"{mpath}.weight")
        if role == "assistant":
            yield from _check_tool_calls(message, mpath, index, open_calls)
            if message.get("content") == "" and not has_call:
                yield Finding("FT232", "assistant content is empty", path=f"{mpath}.content")
        elif role == "user" and isinstance(message.get("content"), str) and not message["content"].strip():
            yield Finding(
                "FT233", "user message is empty: the answer after it answers nothing", path=f"{mpath}.content"
            )
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                shown = "missing" if call_id is None else repr(call_id)
                yield Finding(
                    "FT211",
                    f"tool reply's tool_call_id is {shown}: no earlier tool call has it",
                    path=f"{mpath}.tool_call_id",
                )
            else:
                del open_calls[call_id]
    for call_id, index in open_calls.items():
        if index < len(messages) - 1:
            yield Finding(
                "FT212",
                f"tool call {call_id!r} gets no tool reply before the next messages",
                path=f"{path}[{index}].tool_calls",
            )
    if images > MAX_IMAGES_PER_EXAMPLE:
        yield Finding("FT221", f"{images} images; at most {MAX_IMAGES_PER_EXAMPLE} per example", path=path)
    if not roles or path.endswith("_output"):
        return
    if conversation and "assistant" not in roles:
        last = messages[-1]
        prompt = isinstance(last, dict) and last.get("role") in PROMPT_ROLES
        yield Finding(
            "FT204",
            "no message has role 'assistant'",
            path=path,
            # records that end with their prompt are what reinforcement fine-tuning trains on
            fix=Fix("if these are prompts for reinforcement fine-tuning: --method reinforcement") if prompt else None,
        )
    if not {"system", "developer"} & set(roles):
        yield Finding("FT230", "no system message", path=path)
    if "user" not in roles:
        yield Finding("FT231", "no user message", path=path)


def check_preference(record: dict[str, Any]) -> Iterator[Finding]:
    yield from _unknown_keys(record, PREFERENCE_KEYS, "")
    data = record.get("input")
    if not isinstance(data, dict):
        yield Finding("FT130", f"'input' must be an object with 'messages', got {_type(data)}", path="input")
    else:
        yield from _unknown_keys(data, PREFERENCE_INPUT_KEYS, "input.")
        yield from check_chat(data, "input.")
    for key in ("preferred_output", "non_preferred_output"):
        output = record.get(key)
        if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict):
            yield Finding("FT131", f"'{key}' must be a list with one assistant message", path=key)
            continue
        if output[0].get("role") != "assistant":
            yield Finding("FT131", f"'{key}' must hold an assistant message", path=f"{key}[0].role")
            continue
        yield from check_messages(output, key, conversation=False)


def check_reinforcement(record: dict[str, Any]) -> Iterator[Finding]:
    """An RFT record: chat messages that end with the prompt. Keys other than `messages` and `tools` are the grader's
    item fields, never unknown; whether the grader finds the ones it uses is `rules/graders.py`'s."""
    yield from check_chat(record, "", conversation=False)
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return
    role = messages[-1].get("role")
    if role in PROMPT_ROLES or role not in ROLES:  # an unknown role is FT201's
        return
    path = f"messages[{len(messages) - 1}]"
    if role == "assistant":
        yield Finding(
            "FT140",
            "the last message is an assistant's answer: under reinforcement this record would be trained as a prompt "
            "that already has its answer",
            path=path,
            fix=Fix(
                "end the record with the prompt (a user or developer message) and give the answer as a field the "
                "grader reads ({{item.FIELD}}); or, to train on the answers, --method sft"
            ),
        )
    else:
        yield Finding(
            "FT140",
            f"the last message is a {role} message: a reinforcement record ends with its prompt, a user or developer "
            "message",
            path=path,
        )


def _check_content(message: dict[str, Any], role: str, mpath: str, *, optional: bool) -> Iterator[Finding]:
    cpath = f"{mpath}.content"
    if "content" not in message or message["content"] is None:
        if not optional:
            yield Finding("FT202", f"{role} message has no content", path=cpath)
        return
    content = message["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        yield Finding("FT203", f"content must be a string or a list of parts, got {_type(content)}", path=cpath)
        return
    for index, part in enumerate(content):
        ppath = f"{cpath}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                yield Finding("FT203", "text part needs a string 'text'", path=f"{ppath}.text")
        elif kind == "image_url":
            if role != "user":
                yield Finding(
                    "FT220", f"image in a {role} message; images are allowed in user messages only", path=ppath
                )
            yield from _check_image(part.get("image_url"), f"{ppath}.image_url")
        else:
            yield Finding("FT203", f"content part must have type 'text' or 'image_url', got {kind!r}", path=ppath)


def _check_image(image: Any, path: str) -> Iterator[Finding]:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        yield Finding("FT222", "image_url needs a 'url' string", path=f"{path}.url")
    elif url.startswith("data:"):
        if not url.startswith(IMAGE_MEDIA_TYPES):
            yield Finding("FT222", "image must be JPEG, PNG or WEBP", path=f"{path}.url")
        elif (len(url) - url.find(",") - 1) * 3 // 4 > MAX_IMAGE_BYTES:
            yield Finding("FT222", "image is over 10 MB", path=f"{path}.url")
    elif not url.startswith(("http://", "https://")):
        yield Finding("FT222", "image url must be http(s) or a data: URL", path=f"{path}.url")


def _count_images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


def _check_reasoning(message: dict[str, Any], role: str, mpath: str) -> Iterator[Finding]:
    present = [key for key in REASONING_KEYS if key in message]
    if not present:
        return
    if role != "assistant":
        yield Finding("FT208", f"only assistant messages carry reasoning, not {role}", path=f"{mpath}.{present[0]}")
    elif len(present) > 1:
        yield Finding("FT208", f"both {' and '.join(present)}: give the reasoning once", path=f"{mpath}.{present[1]}")
    elif not isinstance(message[present[0]], str):
        yield Finding(
            "FT208", f"reasoning must be a string, got {_type(message[present[0]])}", path=f"{mpath}.{present[0]}"
        )


def _check_weight(weight: Any, role: str, path: str) -> Iterator[Finding]:
    if role != "assistant":
        yield Finding("FT206", f"'weight' is only allowed on assistant messages, not {role}", path=path)
    elif isinstance(weight, bool) or weight not in (0, 1):
        yield Finding("FT206", f"'weight' must be 0 or 1, got {weight!r}", path=path)


def _check_tool_calls(message: dict[str, Any], mpath: str, index: int, open_calls: dict[str, int]) -> Iterator[Finding]:
    if "tool_calls" in message:
        calls = message["tool_calls"]
        if not isinstance(calls, list) or not calls:
            yield Finding("FT210", "'tool_calls' must be a non-empty list", path=f"{mpath}.tool_calls")
            return
        for cindex, call in enumerate(calls):
            cpath = f"{mpath}.tool_calls[{cindex}]"
            problem = _tool_call_problem(call)
            if problem:
                yield Finding("FT210", problem[1], path=f"{cpath}{problem[0]}")
            elif isinstance(call.get("id"), str):
                open_calls[call["id"]] = index
    if "function_call" in message:
        call = message["function_call"]
        if not (
            isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), str)
        ):
            yield Finding(
                "FT213", "'function_call' needs a string 'name' and string 'arguments'", path=f"{mpath}.function_call"
            )


def _tool_call_problem(call: Any) -> tuple[str, str] | None:
    if not isinstance(call, dict):
        return "", f"tool call must be an object, got {_type(call)}"
    if not isinstance(call.get("id"), str) or not call["id"]:
        return ".id", "tool call needs a string 'id'"
    if call.get("type", "function") != "function":
        return ".type", f"tool call type must be 'function', got {call.get('type')!r}"
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        return ".function.name", "tool call needs a function name"
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return ".function.arguments", f"arguments must be a JSON string, got {_type(arguments)}"
    try:
        json.loads(arguments)
    except ValueError as exc:
        return ".function.arguments", f"arguments are not valid JSON: {exc}"
    return None


def _check_tools(record: dict[str, Any], prefix: str) -> Iterator[Finding]:
    if "tools" in record:
        tools = record["tools"]
        if not isinstance(tools, list):
            yield Finding("FT120", f"'tools' must be a list, got {_type(tools)}", path=f"{prefix}tools")
        else:
            for index, tool in enumerate(tools):
                function = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    yield Finding(
                        "FT120", "tool needs type 'function' and a function with a name", path=f"{prefix}tools[{index}]"
                    )
    if "parallel_tool_calls" in record and not isinstance(record["parallel_tool_calls"], bool):
        yield Finding("FT121", "'parallel_tool_calls' must be true or false", path=f"{prefix}parallel_tool_calls")


def _unknown_keys(obj: dict[str, Any], allowed: frozenset[str], prefix: str) -> Iterator[Finding]:
    for key in obj:
        if key not in allowed:
            code = "FT205" if prefix.startswith(("messages", "input.messages", "preferred", "non_")) else "FT101"
            yield Finding(code, f"unknown key {key!r}", path=f"{prefix}{key}")


def _type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def record_errors(record: dict[str, Any], kind: RecordKind) -> list[Finding]:
    """The findings that make a record unusable for training (severity error): what `convert` refuses to write."""
    findings = [*check_record(record, kind), *lone_surrogates(record)]
    return [f for f in findings if RULES[f.code].severity is Severity.ERROR]


def format_mismatch(
    kind: RecordKind, expected: RecordKind, *, method_given: bool, validation: bool = False
) -> Finding | None:
    """FT104 when the record's format isn't the one the --method given trains on (the fix names the method that
    does); FT103 when the file mixes formats, or a validation file's records aren't of its training file's format."""
    if kind not in ("chat", "preference", "reinforcement") or kind == expected:
        return None
    found, wanted = FORMAT_NAMES[kind], FORMAT_NAMES[expected]
    if method_given:
        switch = f"--method {method_of(kind)} trains on it (without --method, the file's first record decides)"
        return Finding(
            "FT104",
            f"{found} record, but --method {method_of(expected)} trains on {wanted} records",
            fix=None if validation else Fix(switch),  # a validation file follows its training file's method
        )
    if validation:
        return Finding("FT103", f"{found} record, but the training file's records are {wanted}")
    return Finding("FT103", f"{found} record in a file of {wanted} records")
