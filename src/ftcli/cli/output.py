"""Consoles and error printing shared by commands: data to stdout, messages and progress to stderr."""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from rich.console import Console
from rich.text import Text


@cache
def stdout() -> Console:
    return Console(soft_wrap=True)


@cache
def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def print_error(message: str, *, hint: str | None = None, as_json: bool = False) -> None:
    if as_json:
        sys.stderr.write(json.dumps({"error": {"message": message, "hint": hint}}) + "\n")
        return
    console = stderr()
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False)
    if hint:
        console.print(Text.assemble(("hint: ", "dim"), hint), highlight=False)


def print_json(data: Any) -> None:
    """Write a JSON document to stdout (pydantic models and SDK objects dump themselves)."""
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [item.model_dump(mode="json") if hasattr(item, "model_dump") else item for item in data]
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
