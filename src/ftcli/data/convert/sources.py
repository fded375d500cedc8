"""Readers for convert's inputs: JSONL, a JSON array or document, CSV/TSV; a UTF-8 BOM is tolerated.

Each yields `SourceRecord`s with a location a person can find (line N for JSONL/CSV, record N for JSON
documents); a record that can't be read becomes a `SourceRecord` with a problem, and reading goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.data.errors import DataError

BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    location: str  # "line 6" or "record 3"
    value: Any = None
    problem: str | None = None


def read_records(text: str, *, name: str, input_format: str | None = None) -> Iterator[SourceRecord]:
    """`input_format`: jsonl, json, csv or tsv; None guesses from the name's suffix and the content."""
    text = text.removeprefix(BOM)
    kind = input_format or _guess(text, name)
    if kind == "json":
        yield from _json_document(text)
    elif kind in ("csv", "tsv"):
        yield from _delimited(text, "\t" if kind == "tsv" else ",")
    elif kind == "jsonl":
        yield from _jsonl(text)
    else:
        raise DataError(f"unknown input format {kind!r}", hint="use jsonl, json, csv or tsv")


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: invalid UTF-8 at line {line} (byte {exc.start})", hint="re-save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _guess(text: str, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        first = stripped.split("\n", 1)[0]
        try:
            json.loads(first)
        except ValueError:
            return "json"  # an object spread over lines: a pretty-printed document
        return "jsonl"
    return "jsonl"


def _jsonl(text: str) -> Iterator[SourceRecord]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield SourceRecord(f"line {number}", json.loads(line))
        except json.JSONDecodeError as exc:
            yield SourceRecord(f"line {number}", problem=f"invalid JSON at column {exc.colno}: {exc.msg}")


def _json_document(text: str) -> Iterator[SourceRecord]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    records = document if isinstance(document, list) else [document]
    for number, record in enumerate(records, start=1):
        yield SourceRecord(f"record {number}", record)


def _delimited(text: str, delimiter: str) -> Iterator[SourceRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        return
    for row in reader:
        location = f"line {reader.line_num}"
        if None in row:
            yield SourceRecord(location, problem="more fields than the header has")
        else:
            yield SourceRecord(location, dict(row))
