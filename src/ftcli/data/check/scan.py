"""Streaming a JSONL file through the lint: byte ranges that end on line boundaries, linted in forked worker
processes (each reads its own range), merged into one `FileScan` of compact per-example columns and counts."""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ftcli.data.check.lint import BOM, LintOptions, count_line, read_line
from ftcli.data.columns import ExampleColumns
from ftcli.data.diagnostics import Finding
from ftcli.data.rules import lines
from ftcli.data.tokens import ExampleCounter, ExampleTokens

CHUNK_BYTES = 1 << 20
PRETTY_JSON_LIMIT = 256 * 1024 * 1024


LARGEST_KEPT = 10


@dataclass(slots=True)
class FileScan:
    """What linting one file leaves behind: diagnostics, per-example hash columns and value counts."""

    path: str
    records: int = 0
    findings: list[tuple[int | None, Finding]] = field(default_factory=list)
    columns: ExampleColumns = field(default_factory=ExampleColumns)  # line and hashes of each example
    tokens: Counter[int] = field(default_factory=Counter)  # tokens per example -> number of examples
    trained: Counter[int] = field(default_factory=Counter)
    messages: Counter[int] = field(default_factory=Counter)
    largest: list[tuple[int, int]] = field(default_factory=list)  # (tokens, line), at most LARGEST_KEPT
    reasoning_examples: int = 0  # examples whose assistant messages carry reasoning

    @property
    def examples(self) -> int:
        return self.columns.count

    def add(self, line: int, tokens: ExampleTokens, exact: int, near: int) -> None:
        self.columns.append(line, exact, near)
        self.tokens[tokens.total] += 1
        self.trained[tokens.trained] += 1
        self.messages[tokens.messages] += 1
        if len(self.largest) < LARGEST_KEPT:
            heapq.heappush(self.largest, (tokens.total, line))
        elif tokens.total > self.largest[0][0]:
            heapq.heapreplace(self.largest, (tokens.total, line))

    def extend(self, other: FileScan) -> None:
        self.records += other.records
        self.reasoning_examples += other.reasoning_examples
        self.findings.extend(other.findings)
        self.columns.extend(other.columns)
        self.tokens.update(other.tokens)
        self.trained.update(other.trained)
        self.messages.update(other.messages)
        self.largest = heapq.nsmallest(LARGEST_KEPT, self.largest + other.largest, key=lambda x: (-x[0], x[1]))
        self.largest.reverse()  # ascending by tokens again: a valid min-heap for add()


def scan_file(
    path: Path,
    options: LintOptions,
    *,
    counter: ExampleCounter,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> FileScan:
    scan = FileScan(path=str(path))
    if path.stat().st_size == 0 or not _has_content(path):
        scan.findings.append((None, lines.empty_file()))
        return scan
    document = _json_document(path)
    if document is not None:
        scan.findings.append((1, document))
        return scan
    workers = min(workers or os.cpu_count() or 1, max(1, path.stat().st_size // chunk_bytes))
    chunks = plan_chunks(path, chunk_bytes)
    if workers <= 1:
        for chunk in chunks:
            scan.extend(_lint_chunk(path, chunk, options, counter))
    else:
        import gc
        import multiprocessing

        global _worker_state
        _worker_state = (path, options, counter)
        gc.freeze()  # keep the collector from touching (and so copying) the pages workers share with us
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for part in pool.imap(_lint_chunk_in_worker, chunks):
                    scan.extend(part)
        finally:
            gc.unfreeze()
            _worker_state = None
    scan.path = str(path)
    return scan


Chunk = tuple[int, int, int]  # (byte offset, byte length, first line number)


def plan_chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Byte ranges that end on line boundaries, with the 1-based number of each range's first line."""
    offset, line = 0, 1
    with path.open("rb") as stream:
        while True:
            block = stream.read(size)
            if not block:
                return
            end = block.rfind(b"\n") + 1
            if end == 0 or len(block) < size:  # one huge line, or the tail of the file
                extra = b"" if len(block) < size else _read_to_newline(stream)
                block += extra
                end = len(block)
            else:
                stream.seek(offset + end)
            yield offset, end, line
            line += block.count(b"\n", 0, end)
            offset += end


def _read_to_newline(stream: object) -> bytes:
    parts = []
    while True:
        piece = stream.readline(CHUNK_BYTES)  # type: ignore[attr-defined]
        parts.append(piece)
        if not piece or piece.endswith(b"\n"):
            return b"".join(parts)


_worker_state: tuple[Path, LintOptions, ExampleCounter] | None = None


def _lint_chunk_in_worker(chunk: Chunk) -> FileScan:
    assert _worker_state is not None
    path, options, counter = _worker_state
    return _lint_chunk(path, chunk, options, counter)


def _lint_chunk(path: Path, chunk: Chunk, options: LintOptions, counter: ExampleCounter) -> FileScan:
    offset, length, first_line = chunk
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read(length)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    part = FileScan(path=str(path))
    part.records = sum(1 for raw in lines if raw and not raw.isspace())
    findings = part.findings
    results = [read_line(raw, line_no, options, counter) for line_no, raw in enumerate(lines, start=first_line)]
    for line_no, result in enumerate(results, start=first_line):
        count_line(result, options, counter)  # after reading the whole chunk: see ftcli.data.lint
        if result.findings:
            findings.extend((line_no, f) for f in result.findings)
        if result.tokens is not None:
            part.add(line_no, result.tokens, result.exact_hash, result.near_hash)
            part.reasoning_examples += result.reasoning
    return part


def _has_content(path: Path) -> bool:
    with path.open("rb") as stream:
        while block := stream.read(1 << 16):
            if block.replace(BOM, b"").strip():
                return True
    return False


def _json_document(path: Path) -> Finding | None:
    """A pretty-printed JSON document or a JSON array saved as .jsonl: one finding instead of one per line."""
    with path.open("rb") as stream:
        head = stream.read(1 << 16).removeprefix(BOM).lstrip()
    first_line = head.split(b"\n", 1)[0].strip()
    if not first_line.startswith((b"{", b"[")):
        return None
    try:
        json.loads(first_line)
        if not first_line.startswith(b"["):
            return None  # a complete object on line 1: JSONL
    except ValueError:
        pass
    if path.stat().st_size > PRETTY_JSON_LIMIT:
        return None
    try:
        document = json.loads(path.read_bytes().removeprefix(BOM))
    except ValueError:
        return None
    shape = f"a JSON array of {len(document)} records" if isinstance(document, list) else "one JSON document"
    first = document[0] if isinstance(document, list) and document else document
    return lines.not_jsonl(str(path), shape, first)
