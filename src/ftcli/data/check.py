"""`check` end to end: stream a JSONL file in chunks across processes, lint every line, aggregate one Report.

Memory stays flat as files grow: workers read their own byte ranges, and the parent keeps only compact
per-example columns (line, two hashes: 20 bytes per example), value counts for the statistics (bounded by the number
of distinct values, not examples) and the diagnostics.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from ftcli.data import clock
from ftcli.data.catalog import DEFAULT_MODEL, ModelInfo, load_catalog
from ftcli.data.columns import ExampleColumns
from ftcli.data.diagnostics import Applicability, Diagnostic, Finding, Fix, Severity
from ftcli.data.errors import DataError
from ftcli.data.estimate import estimate
from ftcli.data.formats.openai import kind_of, method_of, record_kind
from ftcli.data.lint import BOM, LintOptions, count_line, read_line
from ftcli.data.report import Distribution, Report, Statistics
from ftcli.data.rules import dataset
from ftcli.data.rules.registry import PII_PREFIX, RULES, matches
from ftcli.data.tokenizers import CountingEngine, get_counting_encoding
from ftcli.data.tokens import ExampleTokens, TokenCounter

PiiMode = Literal["warn", "error", "off"]
CHUNK_BYTES = 1 << 20
RELEASE_AFTER_BYTES = 64 * 1024 * 1024
PRETTY_JSON_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CheckOptions:
    model: str | None = None  # None: the default model, without shutdown warnings the user didn't ask for
    method: str | None = None  # "sft" | "dpo"; None: from the first record
    epochs: int | None = None
    pii: PiiMode = "warn"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    near_duplicates: bool = True
    counter: CountingEngine = "auto"  # exact either way; "tiktoken" keeps to OpenAI's reference implementation
    workers: int | None = None  # None: one per CPU
    chunk_bytes: int = CHUNK_BYTES  # the unit of work a process takes at a time
    today: dt.date = field(default_factory=clock.today)


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
        self.findings.extend(other.findings)
        self.columns.extend(other.columns)
        self.tokens.update(other.tokens)
        self.trained.update(other.trained)
        self.messages.update(other.messages)
        self.largest = heapq.nsmallest(LARGEST_KEPT, self.largest + other.largest, key=lambda x: (-x[0], x[1]))
        self.largest.reverse()  # ascending by tokens again: a valid min-heap for add()


def check_file(
    path: str | Path, *, validation: str | Path | None = None, options: CheckOptions | None = None
) -> Report:
    options = options or CheckOptions()
    catalog = load_catalog()
    model = options.model or DEFAULT_MODEL
    info = catalog.lookup(model)
    train_path = _readable(path)
    method = options.method or _first_record_method(train_path) or "sft"
    if method not in ("sft", "dpo"):
        raise DataError(f"unknown method {method!r}", hint="use sft or dpo")
    lint_options = LintOptions(
        encoding=info.encoding,
        context_limit=info.training_context,
        expected_kind=kind_of(method),
        method_given=options.method is not None,
        scan_pii=options.pii != "off",
        near_duplicates=options.near_duplicates,
    )
    encoding = get_counting_encoding(info.encoding, options.counter)
    counter = TokenCounter(encoding)
    scan = partial(
        scan_file, options=lint_options, counter=counter, workers=options.workers, chunk_bytes=options.chunk_bytes
    )
    train = scan(train_path)
    val = scan(_readable(validation)) if validation else None
    counted_with = encoding.engine
    del counter, scan, encoding
    if train_path.stat().st_size > RELEASE_AFTER_BYTES:
        _release_memory()  # counting is done: give tiktoken's ~40 MB back (bpe-openai's tables are static)

    findings = _file_level(train, val, info, method, options)
    diagnostics = _stamp(findings, options)
    limit = info.training_context
    clipped = sum(min(n, limit) * count if limit else n * count for n, count in train.tokens.items())
    over_limit = sum(count for n, count in train.tokens.items() if limit and n > limit)
    return Report(
        file=str(path),
        validation_file=str(validation) if validation else None,
        model=model,
        encoding=info.encoding,
        counted_with=counted_with,
        context_limit=limit,
        method=method,
        records=train.records,
        examples=train.examples,
        validation_examples=val.examples if val else 0,
        diagnostics=diagnostics,
        statistics=Statistics(
            messages_per_example=Distribution.of(train.messages),
            tokens_per_example=Distribution.of(train.tokens),
            trained_tokens_per_example=Distribution.of(train.trained),
            over_limit=over_limit,
        ),
        estimate=estimate(
            model=info.name,
            tokens_per_epoch=clipped,
            n_examples=train.examples,
            epochs=options.epochs,
            price=info.price_per_1m_training_tokens,
        ),
        largest_examples=tuple((line, count) for count, line in sorted(train.largest, reverse=True)),
    )


def scan_file(
    path: Path,
    options: LintOptions,
    *,
    counter: TokenCounter,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> FileScan:
    scan = FileScan(path=str(path))
    if path.stat().st_size == 0 or not _has_content(path):
        scan.findings.append((None, Finding("FT006", "the file is empty")))
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


_worker_state: tuple[Path, LintOptions, TokenCounter] | None = None


def _lint_chunk_in_worker(chunk: Chunk) -> FileScan:
    assert _worker_state is not None
    path, options, counter = _worker_state
    return _lint_chunk(path, chunk, options, counter)


def _lint_chunk(path: Path, chunk: Chunk, options: LintOptions, counter: TokenCounter) -> FileScan:
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
    return part


def _file_level(
    train: FileScan, val: FileScan | None, info: ModelInfo, method: str, options: CheckOptions
) -> list[tuple[str, int | None, Finding]]:
    train_findings = dataset.consistent_system(dataset.group_legacy(train.findings, train.records), train.examples)
    out: list[tuple[str, int | None, Finding]] = [(train.path, line, f) for line, f in train_findings]
    out += [(train.path, line, f) for line, f in dataset.duplicates(train.columns, near=options.near_duplicates)]
    if len(train.tokens) or not train_findings:
        out += [(train.path, None, f) for f in dataset.too_few(train.examples)]
    if val is not None:
        out += [(val.path, line, f) for line, f in dataset.group_legacy(val.findings, val.records)]
        out += [(val.path, line, f) for line, f in dataset.overlap(train.columns, val.columns)]
    out += [(train.path, None, f) for f in _model_findings(info, method, options)]
    return out


def _model_findings(info: ModelInfo, method: str, options: CheckOptions) -> Iterator[Finding]:
    if not info.known:
        yield Finding(
            "FT302",
            f"model {info.name!r} is not in ftcli's catalog: counted with {info.encoding}; "
            "context limit and price unknown",
        )
    elif method not in info.methods:
        yield Finding("FT303", f"{info.name} supports {', '.join(info.methods)}, not {method}")
    if info.shutdown_date is not None and options.model is not None:
        days = clock.days_until(info.shutdown_date, today_is=options.today)
        when = (
            f"shut down on {info.shutdown_date}"
            if days <= 0
            else f"stops serving on {info.shutdown_date} ({days} days)"
        )
        yield Finding(
            "FT304", f"{info.name} {when}", fix=Fix("train on another backend: `ftcli train --backend local`")
        )


def _stamp(findings: list[tuple[str, int | None, Finding]], options: CheckOptions) -> list[Diagnostic]:
    diagnostics = []
    for file, line, finding in findings:
        if options.select and not matches(finding.code, options.select):
            continue
        if options.ignore and matches(finding.code, options.ignore):
            continue
        severity = RULES[finding.code].severity
        if options.pii == "error" and finding.code.startswith(PII_PREFIX):
            severity = Severity.ERROR
        diagnostics.append(
            Diagnostic(
                code=finding.code,
                severity=severity,
                line=line,
                path=finding.path,
                message=finding.message,
                column=finding.column,
                fix=finding.fix,
                file=file,
            )
        )
    files = list(dict.fromkeys(file for file, _, _ in findings))
    diagnostics.sort(key=lambda d: (files.index(d.file or ""), d.line or 0, d.column or 0, d.code))
    return diagnostics


def _release_memory() -> None:
    import contextlib
    import ctypes
    import gc

    get_counting_encoding.cache_clear()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap otherwise


def _readable(path: str | Path | None) -> Path:
    if path is None:
        raise DataError("no input file given")
    resolved = Path(path)
    if not resolved.exists():
        raise DataError(f"{resolved}: no such file")
    if resolved.is_dir():
        raise DataError(f"{resolved}: is a directory, not a file")
    try:
        with resolved.open("rb"):
            pass
    except OSError as exc:
        raise DataError(f"{resolved}: cannot read ({exc.strerror})") from None
    return resolved


def _has_content(path: Path) -> bool:
    with path.open("rb") as stream:
        while block := stream.read(1 << 16):
            if block.replace(BOM, b"").strip():
                return True
    return False


def _first_record_method(path: Path) -> str | None:
    with path.open("rb") as stream:
        for _ in range(1000):
            raw = stream.readline(1 << 26)
            if not raw:
                return None
            try:
                record = json.loads(raw.removeprefix(BOM))
            except ValueError:
                continue
            if isinstance(record, dict):
                return method_of(record_kind(record))
    return None


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
    return Finding(
        "FT004",
        f"the file is {shape} spread over lines, not JSONL (one record per line)",
        fix=Fix(f"ftcli convert {path} -o {path.stem}.converted.jsonl", Applicability.SAFE),
    )
