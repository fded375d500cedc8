"""The one output seam of every command: a command builds one result object and hands it here with its rich view.

Without `--json` the view is printed to stdout. With `--json` stdout receives exactly one JSON document, made from
the same result object, and nothing else: progress, notices and prompts go to stderr, and an error is one JSON
object on stderr (`cli/app.py`). The contract, with its schema version, is written down in docs/json.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.cli.output import stdout
from ftcli.render.terminal import printable

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ftcli.cli.context import AppContext

# Bumped on an incompatible change of any command's JSON document (docs/json.md); `ftcli --json --version` says it.
JSON_SCHEMA_VERSION = 1

View = Callable[[], "RenderableType | str | None"]
# json.dumps escapes C0 but writes DEL and C1 as they are; they occur only inside strings, where a \u escape is the
# same text for a parser and nothing a terminal acts on when a person reads the document
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}


class SecondDocument(RuntimeError):
    """A command tried to write a second JSON document: a bug in ftcli, never the user's fault."""


def jsonable(value: Any) -> Any:
    """Plain JSON data from a result: SDK and pydantic models dump themselves, reports give their versioned dict,
    dataclasses become objects, dates ISO strings, paths strings."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def emit(app: AppContext, result: Any, view: View | None = None) -> None:
    """The command's final output: `result` as one JSON document under --json, else `view()` (a rich renderable,
    or a plain string such as an id that scripts capture) on stdout."""
    if app.json:
        if app.emitted:
            raise SecondDocument("a command wrote two JSON documents")
        app.emitted = True
        document = json.dumps(jsonable(result), ensure_ascii=False, indent=2)
        sys.stdout.write(document.translate(_JSON_ESCAPES) + "\n")
        sys.stdout.flush()
        return
    rendered = view() if view is not None else None
    if rendered is None:
        return
    if isinstance(rendered, str):
        sys.stdout.write(printable(rendered) + "\n")
    else:
        stdout().print(rendered)
