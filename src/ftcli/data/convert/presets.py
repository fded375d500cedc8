"""Presets: one function per source format, from a raw record to an OpenAI record (chat or DPO).

A preset raises `ConversionError` naming the field when a record doesn't fit; the pipeline reports it with the
record's location and goes on. A preset writes every text it reads unchanged, except for its documented edits:
prompt/completion separators and stop sequences, `--system`/`--system-replace`, `<image>` placeholders replaced by
the images, and `--map` templates. What it can't write faithfully, it refuses.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.data.formats.openai import MAX_IMAGE_BYTES, REASONING_KEY, RecordKind
from ftcli.data.formats.raw import MEDIA_COLUMNS, detect_format
from ftcli.data.rules.conversion import empty_prompt
from ftcli.data.rules.records import record_errors


class ConversionError(Exception):
    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class MissingImage(ConversionError):
    """A record names an image file that isn't there: refused, or dropped and counted under `--images skip`."""


@dataclass(frozen=True, slots=True)
class PresetOptions:
    system: str | None = None  # a system prompt for records that have none
    system_replace: tuple[tuple[str, str], ...] = ()  # (old, new) applied to every system prompt
    field_map: dict[str, str] = field(default_factory=dict)  # role -> source field or template, for the `map` preset
    separator: str | None = None  # prompt-completion: suffix to strip from prompts
    stop: str | None = None  # prompt-completion: suffix to strip from completions
    allow_empty_prompt: bool = False  # prompt-completion: keep a record with an empty prompt (assistant-only)
    image_root: Path | None = None  # the folder image paths are relative to (the data file's); None: the working one


Record = dict[str, Any]
Preset = Callable[[Any, PresetOptions], Record]

LEGACY_SEPARATORS = ("\n\n###\n\n", "\n\n===\n\n", "\n\n---\n\n", "\n###\n", " ->", "->")
LEGACY_STOPS = ("\nEND", " END", "\n###", "###", "\n")
MAP_ROLES = ("system", "user", "assistant", "reasoning")  # reasoning: the assistant message's reasoning_content
IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's (and LLaVA's) mark for where an image of the `images` list goes
# The keys each preset reads; others are left out of what it writes, and the pipeline counts them. None: all kept.
PRESET_KEYS: dict[str, frozenset[str] | None] = {
    "chatlaw": frozenset({"meta_instruction", "chat"}),
    "alpaca": frozenset({"instruction", "input", "output", "system", "history", "images"}),
    "sharegpt": frozenset({"conversations", "system", "tools", "chosen", "rejected", "images"}),
    "prompt-completion": frozenset({"prompt", "completion"}),
    "openai": None,
    "llamafactory-v1": frozenset({"messages", "tools", "chosen_messages", "rejected_messages"}),
    "map": frozenset(),  # the mapped fields' top-level keys are added per run
}


def detect(record: Any, options: PresetOptions) -> str | None:
    """The preset that fits a raw record, or None."""
    if not isinstance(record, dict):
        return None
    if options.field_map:
        return "map"
    found = detect_format(record)
    return found.preset if found is not None else None


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
    """Alpaca: `{instruction, input, output, system?, history?: [[user, assistant], ...], images?}`."""
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
    _place_images(messages, obj, options)
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
    """ShareGPT: `{conversations: [{from, value}], system?, tools?, images?}`; with `chosen`/`rejected`, DPO records."""
    obj = _object(record)
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ConversionError("must be a non-empty list", "conversations")
    messages = _system_messages(obj.get("system"), options)
    calls = _Calls()
    for index, turn in enumerate(turns):
        messages.append(_sharegpt_turn(turn, f"conversations[{index}]", calls, options))
    _place_images(messages, obj, options)
    tools = _tools(obj.get("tools"))
    if "chosen" in obj or "rejected" in obj:
        return _preference(messages, obj, tools)
    result: Record = {"messages": messages}
    if tools:
        result["tools"] = tools
    return _chat(result)


class _Calls:
    """Tool-call ids of one record: each call gets the next id; a tool result answers the oldest call still open.
    A call is open until a message other than a call or a tool result comes (`close`): a later result never answers
    an earlier turn's call (one result for several calls answers the first; check then flags the others, FT212)."""

    def __init__(self) -> None:
        self.made = 0
        self.open: list[str] = []

    def close(self) -> None:
        self.open = []

    def new(self) -> str:
        self.made += 1
        self.open.append(f"call_{self.made}")
        return self.open[-1]

    def answer(self, path: str) -> str:
        if not self.open:
            raise ConversionError("tool result without an earlier tool call", path)
        return self.open.pop(0)


def _sharegpt_turn(turn: Any, path: str, calls: _Calls, options: PresetOptions) -> Record:
    if not isinstance(turn, dict):
        raise ConversionError("turn must be an object", path)
    sender = turn.get("from")
    role = _SHAREGPT_ROLES.get(sender) if isinstance(sender, str) else None
    if role is None:
        raise ConversionError(f"unknown sender {sender!r}", f"{path}.from")
    value = _str(turn, "value", f"{path}.")
    if role == "system":
        calls.close()
        return _msg("system", _system(value, options))
    if role == "function_call":
        return {"role": "assistant", "tool_calls": [_tool_call(value, calls.new(), f"{path}.value")]}
    if role == "tool":
        if not calls.made:
            raise ConversionError("observation without an earlier function_call", path)
        call_id = calls.open.pop(0) if calls.open else f"call_{calls.made}"  # several results for one call: the last
        return {"role": "tool", "tool_call_id": call_id, "content": value}
    calls.close()
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
    return preference_record(messages, tools, outputs["preferred_output"][0], outputs["non_preferred_output"][0])


def preference_record(prompt: list[Record], tools: Any, preferred: Record, non_preferred: Record) -> Record:
    """A DPO record: a prompt (with its tools) and two answers to it."""
    data: Record = {"messages": prompt}
    if tools:
        data["tools"] = tools
    return _dpo({"input": data, "preferred_output": [preferred], "non_preferred_output": [non_preferred]})


def prompt_completion(record: Any, options: PresetOptions) -> Record:
    """Legacy `{prompt, completion}`: strip the separator and stop sequence, drop the leading space. An empty prompt
    is refused (FT233) unless `allow_empty_prompt`: then the example has no user message."""
    obj = _object(record)
    prompt = _strip_suffix(_str(obj, "prompt", allow_empty=True), options.separator, LEGACY_SEPARATORS)
    completion = _strip_suffix(_str(obj, "completion"), options.stop, LEGACY_STOPS).strip()
    messages = _system_messages(None, options)
    if prompt.strip():
        messages.append(_msg("user", prompt.strip()))
    elif not options.allow_empty_prompt:
        finding = empty_prompt("prompt")
        hint = f"; {finding.fix.hint}" if finding.fix else ""
        raise ConversionError(f"{finding.message} ({finding.code}){hint}", "prompt")
    messages.append(_msg("assistant", completion))
    return _chat({"messages": messages})


def openai(record: Any, options: PresetOptions) -> Record:
    """Already OpenAI's format: validate and normalise (rewrite system prompts, drop nulls, `reasoning` →
    `reasoning_content`), and put an `images` list in place of its `<image>` placeholders."""
    obj = _object(record)
    if "messages" not in obj:
        for key in ("preferred_output", "non_preferred_output"):
            for index, message in enumerate(obj.get(key) or () if isinstance(obj.get(key), list) else ()):
                _canonical_reasoning(message, f"{key}[{index}]")
        data = obj.get("input")
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            _normalise_messages(data["messages"], "input.messages", options)
        return _dpo(obj)
    if isinstance(obj["messages"], list):
        _normalise_messages(obj["messages"], "messages", options)
        if any(column in obj for column in MEDIA_COLUMNS):
            _place_images(obj["messages"], obj, options)
            obj = {key: value for key, value in obj.items() if key not in MEDIA_COLUMNS}
    return _chat(obj)


def _normalise_messages(messages: list[Any], path: str, options: PresetOptions) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "system" and isinstance(message.get("content"), str):
            message["content"] = _system(message["content"], options)
        _canonical_reasoning(message, f"{path}[{index}]")


def _canonical_reasoning(message: Any, path: str) -> None:
    """`reasoning` → `reasoning_content` (in place); both given and different: refused, there is no telling which."""
    if not isinstance(message, dict) or "reasoning" not in message:
        return
    alias = message.pop("reasoning")
    if REASONING_KEY in message and message[REASONING_KEY] != alias:
        raise ConversionError(f"differs from its {REASONING_KEY}: give the reasoning once", f"{path}.reasoning")
    message[REASONING_KEY] = alias


def mapped(record: Any, options: PresetOptions) -> Record:
    """Generic fields: `--map user=question --map assistant=answer [--map system=...] [--map reasoning=...]`; a map
    may be a template of fields, `--map user='{premise}\\n\\n{hypothesis}'`."""
    obj = _object(record)
    fields = options.field_map
    missing = {"user", "assistant"} - set(fields)
    if missing:
        raise ConversionError(f"--map needs {' and '.join(sorted(missing))}=FIELD")
    system = render_map(obj, fields["system"], allow_missing=True) if "system" in fields else None
    messages = _system_messages(system, options)
    answer = _msg("assistant", render_map(obj, fields["assistant"]))
    if "reasoning" in fields:
        answer[REASONING_KEY] = render_map(obj, fields["reasoning"])
    messages += [_msg("user", render_map(obj, fields["user"])), answer]
    return _chat({"messages": messages})


_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def parse_map(spec: str) -> list[tuple[str, str]]:
    """A --map value as (kind, text) pieces: ("field", dotted path) or ("text", literal). A value without braces is
    one field name; in a template, {path} is a field, {{ and }} are braces, and \\n, \\t, \\\\ are a newline, a tab
    and a backslash (so a shell's single quotes can carry them)."""
    if "{" not in spec and "}" not in spec:
        return [("field", spec)]
    pieces: list[tuple[str, str]] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(spec):
        if match.start() > position:
            pieces.append(("text", _unescape(spec[position : match.start()])))
        token = match.group(0)
        if token in ("{{", "}}"):
            pieces.append(("text", token[0]))
        elif match.group(1) is not None and match.group(1).strip():
            pieces.append(("field", match.group(1).strip()))
        else:
            raise ValueError(f"unmatched {token!r} at character {match.start() + 1} (write {{{{ or }}}} for a brace)")
        position = match.end()
    if position < len(spec):
        pieces.append(("text", _unescape(spec[position:])))
    return pieces


def render_map(obj: Record, spec: str, *, allow_missing: bool = False) -> str:
    pieces = parse_map(spec)
    if len(pieces) == 1 and pieces[0][0] == "field":
        value = _lookup(obj, pieces[0][1])
        if allow_missing and (value is None or (isinstance(value, str) and not value.strip())):
            return ""
        return _field(obj, pieces[0][1])
    text = "".join(_field(obj, value, allow_empty=True) if kind == "field" else value for kind, value in pieces)
    if not text.strip() and not allow_missing:
        raise ConversionError("is empty", spec)
    return text


def _unescape(text: str) -> str:
    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


def llamafactory_v1(record: Any, options: PresetOptions) -> Record:
    """LLaMA-Factory v1: messages whose content is a list of parts `{type: text|reasoning|tool_call|image_url,
    value}` with a per-message `loss_weight`; `{chosen_messages, rejected_messages}` for preference data."""
    obj = _object(record)
    tools = _tools(obj.get("tools"))
    if "chosen_messages" in obj or "rejected_messages" in obj:
        chosen = _v1_messages(obj.get("chosen_messages"), "chosen_messages", options)
        rejected = _v1_messages(obj.get("rejected_messages"), "rejected_messages", options)
        for path, messages in (("chosen_messages", chosen), ("rejected_messages", rejected)):
            if messages[-1].get("role") != "assistant":
                raise ConversionError("the last message must be the assistant's answer", f"{path}[{len(messages) - 1}]")
        if chosen[:-1] != rejected[:-1]:
            raise ConversionError(
                "chosen and rejected conversations differ before their last message: a preference pair answers one "
                "prompt",
                "rejected_messages",
            )
        answers = [{k: v for k, v in m.items() if k != "weight"} for m in (chosen[-1], rejected[-1])]
        return preference_record(chosen[:-1], tools, answers[0], answers[1])
    result: Record = {"messages": _v1_messages(obj.get("messages"), "messages", options)}
    if tools:
        result["tools"] = tools
    return _chat(result)


_V1_ROLES = ("system", "user", "assistant", "tool")


def _v1_messages(raw: Any, path: str, options: PresetOptions) -> list[Record]:
    if not isinstance(raw, list) or not raw:
        raise ConversionError("must be a non-empty list of messages", path)
    calls = _Calls()
    return [_v1_message(message, f"{path}[{index}]", calls, options) for index, message in enumerate(raw)]


def _v1_message(message: Any, path: str, calls: _Calls, options: PresetOptions) -> Record:
    if not isinstance(message, dict):
        raise ConversionError("message must be an object", path)
    role = message.get("role")
    if role not in _V1_ROLES:
        raise ConversionError(f"role is {role!r}; expected one of {', '.join(_V1_ROLES)}", f"{path}.role")
    unknown = sorted(set(message) - {"role", "content", "loss_weight"})
    if unknown:
        raise ConversionError(f"unknown key {unknown[0]!r}: it has no place in OpenAI's format", f"{path}.{unknown[0]}")
    parts: list[Record] = []
    reasoning: list[str] = []
    tool_calls: list[Record] = []
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "value": content}]
    if not isinstance(content, list):
        raise ConversionError("must be a list of {type, value} parts", f"{path}.content")
    for index, part in enumerate(content):
        ppath = f"{path}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(value, str):
            raise ConversionError("part needs a string 'value'", f"{ppath}.value")
        if kind == "text":
            if tool_calls:
                raise ConversionError("text after a tool call: OpenAI's message puts the text first", ppath)
            parts.append({"type": "text", "text": value})
        elif kind == "reasoning" and role == "assistant":
            if parts or tool_calls or reasoning:
                raise ConversionError("reasoning must come once, before the answer, to fit reasoning_content", ppath)
            reasoning.append(value)
        elif kind == "tool_call" and role == "assistant":
            tool_calls.append(_tool_call(value, "", f"{ppath}.value"))  # its id once the message is read
        elif kind == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(value, f"{ppath}.value", options)}})
        else:
            raise ConversionError(f"a {kind!r} part has no place in a {role} message of OpenAI's format", ppath)
    result: Record = {"role": role}
    if role == "tool":
        result["tool_call_id"] = calls.answer(path)
    else:
        calls.close()
        for call in tool_calls:
            call["id"] = calls.new()
    if role == "system":
        parts = [{"type": "text", "text": _system(p["text"], options)} if p["type"] == "text" else p for p in parts]
    if len(parts) == 1 and parts[0]["type"] == "text":
        result["content"] = parts[0]["text"]
    elif parts:
        result["content"] = parts
    elif not tool_calls:
        result["content"] = ""
    if reasoning:
        result[REASONING_KEY] = reasoning[0]
    if tool_calls:
        result["tool_calls"] = tool_calls
    weight = _v1_weight(message.get("loss_weight", 1.0 if role == "assistant" else 0.0), role, f"{path}.loss_weight")
    if weight == 0 and role == "assistant":
        result["weight"] = 0
    return result


def _v1_weight(value: Any, role: str, path: str) -> int:
    """loss_weight → OpenAI's weight: 0 or 1 on an assistant message; only assistant messages are trained."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value not in (0, 1):
        raise ConversionError(f"loss_weight {value!r}: OpenAI's weight is 0 or 1", path)
    if value and role != "assistant":
        raise ConversionError(f"loss_weight {value!r} on a {role} message: only assistant messages are trained", path)
    return int(value)


PRESETS: dict[str, Preset] = {
    "chatlaw": chatlaw,
    "alpaca": alpaca,
    "sharegpt": sharegpt,
    "prompt-completion": prompt_completion,
    "openai": openai,
    "llamafactory-v1": llamafactory_v1,
    "map": mapped,
}


# -- images ---------------------------------------------------------------------------------------------

_MEDIA_TYPES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"))


def _place_images(messages: list[Record], obj: Record, options: PresetOptions) -> None:
    """The record's `images`, in order, where its `<image>` placeholders stand (in place): a user message's text
    becomes text and image_url parts. The counts must match; placeholders outside user messages are refused."""
    if not any(column in obj for column in MEDIA_COLUMNS):
        return  # no images: an "<image>" in the text is text
    for column in MEDIA_COLUMNS[1:]:
        if obj.get(column):
            raise ConversionError(f"OpenAI's chat format has no place for {column.removesuffix('s')}", column)
    images = obj.get("images") or []
    if not isinstance(images, list):
        raise ConversionError("must be a list of image paths or URLs", "images")
    placeholders = 0
    for message in messages:
        content = message.get("content")
        count = content.count(IMAGE_PLACEHOLDER) if isinstance(content, str) else 0
        if count and message.get("role") != "user":
            raise ConversionError(f"{IMAGE_PLACEHOLDER} in a {message.get('role')} message: images go in user messages")
        placeholders += count
    if placeholders != len(images):
        raise ConversionError(
            f"{len(images)} image{'s' * (len(images) != 1)} but {placeholders} {IMAGE_PLACEHOLDER} placeholder"
            f"{'s' * (placeholders != 1)}: each image needs its place in the text",
            "images",
        )
    urls = iter([_image_url(image, f"images[{index}]", options) for index, image in enumerate(images)])
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) or IMAGE_PLACEHOLDER not in content:
            continue
        parts: list[Record] = []
        for index, text in enumerate(content.split(IMAGE_PLACEHOLDER)):
            if index:
                parts.append({"type": "image_url", "image_url": {"url": next(urls)}})
            if text:
                parts.append({"type": "text", "text": text})
        message["content"] = parts


def _image_url(reference: Any, path: str, options: PresetOptions) -> str:
    """An http(s) or data: URL as it is; a file path (relative to the data file) read into a base64 data URL."""
    if not isinstance(reference, str) or not reference:
        raise ConversionError("must be an image path or URL", path)
    if reference.startswith(("http://", "https://", "data:")):
        return reference
    root = (options.image_root or Path()).resolve()
    file = root / reference
    if not file.resolve().is_relative_to(root):  # `..`, an absolute path or a link: the data may not reach out
        raise ConversionError(
            f"image {reference} is outside {root} (the folder image paths are read from); "
            "pass --image-dir with a folder that holds it",
            path,
        )
    data = _read_image(file, path)
    media = next((name for magic, name in _MEDIA_TYPES if data.startswith(magic)), None)
    if media is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        media = "webp"
    if media is None:
        raise ConversionError(f"image {file} is not JPEG, PNG or WEBP", path)
    return f"data:image/{media};base64,{base64.b64encode(data).decode('ascii')}"


def _read_image(file: Path, path: str) -> bytes:
    """A plain file's bytes, at most the size an image may have: a device (/dev/zero), a FIFO or a huge file is
    refused before it is read whole (opened without blocking, judged by fstat, read up to the limit)."""
    try:
        handle = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MissingImage(f"image {file} not found", path) from None
    except OSError as exc:
        raise MissingImage(f"image {file} can't be read ({exc.strerror})", path) from None
    with os.fdopen(handle, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ConversionError(f"image {file} is not a plain file", path)
        if status.st_size > MAX_IMAGE_BYTES:
            raise ConversionError(f"image {file} is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB", path)
        data = opened.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:  # it grew while read
        raise ConversionError(f"image {file} is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB", path)
    return data


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
    """A field by its dotted path: object keys, and list indices (`answers.0`)."""
    value: Any = obj
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _field(obj: Record, dotted: str, *, allow_empty: bool = False) -> str:
    """A mapped field's text: a string as it is, a number in JSON's spelling, a list of those one per line."""
    value = _lookup(obj, dotted)
    if value is None:
        raise ConversionError("missing", dotted)
    if isinstance(value, list):
        if not all(_scalar(item) for item in value):
            raise ConversionError(f"is a list of objects or lists: map a path into it, e.g. {dotted}.0.FIELD", dotted)
        value = "\n".join(_text(item) for item in value)
    elif _scalar(value):
        value = _text(value)
    else:
        what = "an object: map a path into it" if isinstance(value, dict) else f"{json.dumps(value)}, not text"
        raise ConversionError(f"is {what}", dotted)
    if not allow_empty and not value.strip():
        raise ConversionError("is empty", dotted)
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool))


def _text(value: str | float) -> str:
    return value if isinstance(value, str) else json.dumps(value)


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
