"""Parsing of option values shared by several commands (one parser per kind of value)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ftcli.service.errors import UsageError


def key_value(value: str, option: str) -> tuple[str, str]:
    """`KEY=VALUE` (the value may hold more `=`); a usage error naming the option otherwise."""
    key, sep, rest = value.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} expects KEY=VALUE, got {value!r}")
    return key, rest


def key_values(values: Iterable[str] | None, option: str) -> tuple[tuple[str, str], ...]:
    return tuple(key_value(value, option) for value in values or ())


def key_json(value: str, option: str) -> tuple[str, object]:
    """`KEY=VALUE` with a JSON value (`stop_at_loss=0.05`, `lora_rank=8`); a value that isn't JSON is a string."""
    key, rest = key_value(value, option)
    try:
        return key, json.loads(rest)
    except ValueError:
        return key, rest


def json_file(path: Path, option: str) -> Any:
    """The JSON value of the file an option names (a grader, a schema); a usage error naming the option otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise UsageError(f"{option} {path}: not JSON ({exc})") from None


SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(value: str, option: str) -> int:
    """`8G`, `500M`, `64K`, `2T` (powers of 1024, a trailing B allowed) or plain bytes; more than zero."""
    text = value.strip().upper().removesuffix("B") or "?"
    factor = SIZE_UNITS.get(text[-1], 1)
    number = text[:-1] if text[-1] in SIZE_UNITS else text
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"{option} {value!r} is not a size", hint="e.g. 2T, 8G, 500M, 64K or a number of bytes")
    return int(number) * factor
