"""Presets: one function per source format, from a raw record to an OpenAI record (chat or DPO).

A preset raises `ConversionError` naming the field when a record doesn't fit; the pipeline reports it with the
record's location and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftcli.data.formats.openai import RecordKind
from ftcli.data.rules.records import record_errors


class ConversionError(Exception):
    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class PresetOptions:
    system: str | None = None  # a system prompt for records that have none
    system_replace: tuple[tuple[str, str], ...] = ()  # (old, new) applied to every system prompt
    field_map: dict[str, str] = field(default_factory=dict)  # role -> source field, for the `map` preset
    separator: str | None = None  # prompt-completion: suffix to strip from prompts
    stop: str | None = None  # prompt-completion: suffix to strip from completions


Record = dict[str, Any]
Preset = Callable[[Any, PresetOptions], Record]

LEGACY_SEPARATORS = ("\n\n###\n\n", "\n\n===\n\n", "\n\n---\n\n", "\n###\n", " ->", "->")
LEGACY_STOPS = ("\nEND", " END", "\n###", "###", "\n")


def detect(record: Any, options: PresetOptions) -> str | None:
    """The preset that fits a raw record, or None."""
    if not isinstance(record, dict):
        return None
    if options.field_map:
        return "map"
    keys = set(record)
    if "messages" in keys or {"input", "preferred_output"} <= keys:
        return "openai"
    if {"meta_instruction", "chat"} <= keys:
        return "chatlaw"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    return None


def chatlaw(record: Any, options: PresetOptions) -> Record:
    """ChatLaw: `{meta_instruction, chat: [{咨询者, ChatLAW}]}` → system + user/assistant turns."""
    obj = _object(record)
    messages = [_msg("system", _system(_str(obj, "meta_instruction"), options))]
    chat = obj.get("chat")
    if not isinstance(chat, list) or not chat:
        raise ConversionError("must be a non-empty list of turns", "chat")
    for index, turn in enumerate(chat):
        if not isinstance(turn, dict):
            raise ConversionError("turn must be an object", f"chat[{index}]")
        messages.append(_msg("user", _str(turn, "咨询者", f"chat[{index}].")))
        messages.append(_msg("assistant", _str(turn, "ChatLAW", f"chat[{index}].")))
    return _chat({"messages": messages})


def alpaca(record: Any, options: PresetOptions) -> Record:
    """Alpaca: `{instruction, input, output, system?, history?: [[user, assistant], ...]}`."""
    obj = _object(record)
    messages = _system_messages(obj.get("system"), options)
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise ConversionError("must be a list of [user, assistant] pairs", "history")
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ConversionError("must be a [user, assistant] pair of strings", f"history[{index}]")
        messages += [_msg("user", pair[0]), _msg("assistant", pair[1])]
    prompt = _str(obj, "instruction")
    extra = obj.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n{extra}"
    messages += [_msg("user", prompt), _msg("assistant", _str(obj, "output"))]
    return _chat({"messages": messages})


_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "function_call",
    "observation": "tool",
    "function": "tool",
    "tool": "tool",
}


def sharegpt(record: Any, options: PresetOptions) -> Record:
    """ShareGPT: `{conversations: [{from, value}], system?, tools?}`; with `chosen`/`rejected`, DPO records."""
    obj = _object(record)
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ConversionError("must be a non-empty list", "conversations")
    messages = _system_messages(obj.get("system"), options)
    calls: list[str] = []
    for index, turn in enumerate(turns):
        messages.append(_sharegpt_turn(turn, f"conversations[{index}]", calls, options))
    tools = _tools(obj.get("tools"))
    if "chosen" in obj or "rejected" in obj:
        return _preference(messages, obj, tools)
    result: Record = {"messages": messages}
    if tools:
        result["tools"] = tools
    return _chat(result)


def _sharegpt_turn(turn: Any, path: str, calls: list[str], options: PresetOptions) -> Record:
    if not isinstance(turn, dict):
        raise ConversionError("turn must be an object", path)
    sender = turn.get("from")
    role = _SHAREGPT_ROLES.get(sender) if isinstance(sender, str) else None
    if role is None:
        raise ConversionError(f"unknown sender {sender!r}", f"{path}.from")
    value = _str(turn, "value", f"{path}.")
    if role == "system":
        return _msg("system", _system(value, options))
    if role == "function_call":
        calls.append(f"call_{len(calls) + 1}")
        return {"role": "assistant", "tool_calls": [_tool_call(value, calls[-1], f"{path}.value")]}
    if role == "tool":
        if not calls:
            raise ConversionError("observation without an earlier function_call", path)
        return {"role": "tool", "tool_call_id": calls[-1], "content": value}
    return _msg(role, value)


def _tool_call(value: str, call_id: str, path: str) -> Record:
    try:
        call = json.loads(value)
    except ValueError as exc:
        raise ConversionError(f"function_call is not JSON: {exc}", path) from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ConversionError("function_call needs a name", path)
    arguments = call.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": call["name"], "arguments": arguments}}


def _tools(raw: Any) -> list[Record]:
    if raw in (None, "", []):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConversionError(f"not a JSON list: {exc}", "tools") from None
    if not isinstance(raw, list):
        raise ConversionError("must be a list of function definitions", "tools")
    tools = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise ConversionError("must be an object", f"tools[{index}]")
        tools.append(
            tool if tool.get("type") == "function" and "function" in tool else {"type": "function", "function": tool}
        )
    return tools


def _preference(messages: list[Record], obj: Record, tools: list[Record]) -> Record:
    outputs = {}
    for key, target in (("chosen", "preferred_output"), ("rejected", "non_preferred_output")):
        value = obj.get(key)
        text = value.get("value") if isinstance(value, dict) else value
        if not isinstance(text, str):
            raise ConversionError("must be a string or a {from, value} turn", key)
        outputs[target] = [_msg("assistant", text)]
    data: Record = {"messages": messages}
    if tools:
        data["tools"] = tools
    return _dpo({"input": data, **outputs})


def prompt_completion(record: Any, options: PresetOptions) -> Record:
    """Legacy `{prompt, completion}`: strip the separator and stop sequence, drop the leading space."""
    obj = _object(record)
    prompt = _strip_suffix(_str(obj, "prompt", allow_empty=True), options.separator, LEGACY_SEPARATORS)
    completion = _strip_suffix(_str(obj, "completion"), options.stop, LEGACY_STOPS).strip()
    messages = _system_messages(None, options)
    if prompt.strip():
        messages.append(_msg("user", prompt.strip()))
    messages.append(_msg("assistant", completion))
    return _chat({"messages": messages})


def openai(record: Any, options: PresetOptions) -> Record:
    """Already OpenAI's format: validate and normalise (rewrite system prompts, drop nulls)."""
    obj = _object(record)
    if "messages" not in obj:
        return _dpo(obj)
    for message in obj["messages"] if isinstance(obj["messages"], list) else []:
        if isinstance(message, dict) and message.get("role") == "system" and isinstance(message.get("content"), str):
            message["content"] = _system(message["content"], options)
    return _chat(obj)


def mapped(record: Any, options: PresetOptions) -> Record:
    """Generic fields: `--map user=question --map assistant=answer [--map system=...]`."""
    obj = _object(record)
    fields = options.field_map
    missing = {"user", "assistant"} - set(fields)
    if missing:
        raise ConversionError(f"--map needs {' and '.join(sorted(missing))}=FIELD")
    system = _lookup(obj, fields["system"]) if "system" in fields else None
    messages = _system_messages(system, options)
    messages += [_msg("user", _field(obj, fields["user"])), _msg("assistant", _field(obj, fields["assistant"]))]
    return _chat({"messages": messages})


PRESETS: dict[str, Preset] = {
    "chatlaw": chatlaw,
    "alpaca": alpaca,
    "sharegpt": sharegpt,
    "prompt-completion": prompt_completion,
    "openai": openai,
    "map": mapped,
}


# -- helpers --------------------------------------------------------------------------------------------


def _msg(role: str, content: str) -> Record:
    return {"role": role, "content": content}


def _system(text: str, options: PresetOptions) -> str:
    for old, new in options.system_replace:
        text = text.replace(old, new)
    return text


def _system_messages(system: Any, options: PresetOptions) -> list[Record]:
    text = system if isinstance(system, str) and system.strip() else options.system
    return [_msg("system", _system(text, options))] if text else []


def _object(record: Any) -> Record:
    if not isinstance(record, dict):
        raise ConversionError(f"record must be a JSON object, got {type(record).__name__}")
    return record


def _str(obj: Record, key: str, prefix: str = "", *, allow_empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ConversionError("missing" if value is None else "must be a string", f"{prefix}{key}")
    if not allow_empty and not value.strip():
        raise ConversionError("is empty", f"{prefix}{key}")
    return value


def _lookup(obj: Record, dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _field(obj: Record, dotted: str) -> str:
    value = _lookup(obj, dotted)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConversionError("missing or empty", dotted)
    return value


def _strip_suffix(text: str, given: str | None, known: tuple[str, ...]) -> str:
    for suffix in (given,) if given is not None else known:
        if suffix and text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def _chat(record: Record) -> Record:
    return _valid(record, "chat")


def _dpo(record: Record) -> Record:
    return _valid(record, "preference")


def _valid(record: Record, kind: RecordKind) -> Record:
    """The converted record, without null fields, if `check` would find no error in it (the one description of the
    format: data/formats/openai.py and its rules); else the first error, naming its field."""
    compact = _without_nulls(record)
    errors = record_errors(compact, kind)
    if errors:
        first = errors[0]
        raise ConversionError(f"{first.message} ({first.code})", first.path or None)
    result: Record = compact
    return result


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
