"""Bytes and JSON rules (FT0xx, and FT100): what makes a line, or a whole file, no JSONL record at all."""

from __future__ import annotations

import re
from typing import Any

from ftcli.data.diagnostics import Applicability, Finding, Fix
from ftcli.data.formats.raw import converted_name, detect_format, shell_word
from ftcli.data.tokens import iter_texts

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def invalid_utf8(byte: int, column: int) -> Finding:
    return Finding("FT001", f"invalid UTF-8 byte 0x{byte:02x}", column=column)


def invalid_json(message: str, column: int) -> Finding:
    return Finding("FT002", f"invalid JSON: {message}", column=column)


def byte_order_mark() -> Finding:
    return Finding(
        "FT003",
        "file starts with a UTF-8 byte-order mark",
        column=1,
        fix=Fix("save the file as UTF-8 without BOM, or run `ftcli convert`", Applicability.SAFE),
    )


def not_jsonl(path: str, shape: str, first: Any = None) -> Finding:
    """A file-level finding: `shape` says what the file is ("one JSON document", "a JSON array of 3 records");
    `first` is its first record, whose format names the convert preset."""
    found = detect_format(first)
    command = found.command(path, converted_name(path)) if found is not None else None
    of = f"; its records are {found.description}" if found is not None and not found.ready else ""
    return Finding(
        "FT004",
        f"the file is {shape} spread over lines, not JSONL (one record per line){of}",
        fix=Fix(
            command or f"ftcli convert {shell_word(path)} -o {shell_word(converted_name(path))}", Applicability.SAFE
        ),
    )


def blank_line() -> Finding:
    return Finding("FT005", "blank line", fix=Fix("remove it", Applicability.SAFE))


def empty_file() -> Finding:
    return Finding("FT006", "the file is empty")


def lone_surrogates(record: dict[str, Any]) -> list[Finding]:
    """FT007: half a surrogate pair (a JSON escape such as \\ud800 alone) is no character: it can't be encoded."""
    found = []
    for path, value in iter_texts(record):
        if match := _LONE_SURROGATE.search(value):
            found.append(
                Finding(
                    "FT007",
                    f"lone surrogate \\u{ord(match.group()):04x} at character {match.start() + 1} of the text",
                    path=path,
                    fix=Fix("write the character itself, or both halves of its surrogate pair"),
                )
            )
    return found


def not_an_object(value: Any) -> Finding:
    return Finding("FT100", f"record must be a JSON object, got {type(value).__name__}")
