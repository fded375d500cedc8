"""`check` end to end: stream a JSONL file in chunks across processes, lint every line, aggregate one Report.

Memory stays flat as files grow: workers read their own byte ranges, and the parent keeps only compact
per-example columns (line, two hashes: 20 bytes per example), value counts for the statistics (bounded by the number
of distinct values, not examples) and the diagnostics.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ftcli.data import clock
from ftcli.data.catalog import DEFAULT_MODEL, ModelInfo, load_catalog
from ftcli.data.chat_template import renders_reasoning
from ftcli.data.check.lint import BOM, LintOptions
from ftcli.data.check.report import Distribution, Report, Statistics
from ftcli.data.check.scan import CHUNK_BYTES, FileScan, scan_file
from ftcli.data.diagnostics import Diagnostic, Finding, Severity
from ftcli.data.errors import DataError
from ftcli.data.estimate import estimate
from ftcli.data.formats.openai import METHODS, REASONING_KEY, Method, kind_of, method_of, record_kind
from ftcli.data.local_bases import LocalBase, local_base
from ftcli.data.rules import dataset
from ftcli.data.rules.graders import ROOT, invalid_grader
from ftcli.data.rules.model import model_findings, reasoning_not_trained
from ftcli.data.rules.registry import PII_PREFIX, PROFILES, RULES, matches
from ftcli.data.template_tokens import TemplateCounter
from ftcli.data.tokenizers import CountingEngine, get_counting_encoding
from ftcli.data.tokens import ExampleCounter, TokenCounter

PiiMode = Literal["warn", "error", "off"]
RELEASE_AFTER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CheckOptions:
    model: str | None = None  # None: the default model, without shutdown warnings the user didn't ask for
    method: str | None = None  # "sft" | "dpo" | "reinforcement"; None: from the first record (a grader: RFT)
    epochs: int | None = None
    pii: PiiMode = "warn"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    profile: str | None = None  # a named set of rules to leave out (rules/registry.PROFILES)
    near_duplicates: bool = True
    counter: CountingEngine = "auto"  # exact either way; "tiktoken" keeps to OpenAI's reference implementation
    max_seq_length: int | None = None  # a local base's: examples are cut there (default: its context, at most 4096)
    workers: int | None = None  # None: one per CPU
    chunk_bytes: int = CHUNK_BYTES  # the unit of work a process takes at a time
    today: dt.date = field(default_factory=clock.today)
    # a reinforcement job's grader (OpenAI's grader JSON, as read): checked, and each field it reads of the records
    # ({{item.FIELD}}) looked for in every record; `grader_file` names it in the findings
    grader: Any = None
    grader_file: str = "grader"


def check_file(
    path: str | Path, *, validation: str | Path | None = None, options: CheckOptions | None = None
) -> Report:
    options = options or CheckOptions()
    catalog = load_catalog()
    model = options.model or DEFAULT_MODEL
    info = catalog.lookup(model)
    local = local_base(model) if options.model and not info.known else None
    if local is not None:  # counted as its training job will count: its own tokenizer and chat template
        info = local.model_info(options.max_seq_length)
    train_path = _readable(path)
    given_grader = options.grader is not None
    method = options.method or ("reinforcement" if given_grader else None) or file_method(train_path) or "sft"
    if method not in METHODS:
        raise DataError(f"unknown method {method!r}", hint=f"use {', '.join(METHODS[:-1])} or {METHODS[-1]}")
    if given_grader and method != "reinforcement":
        raise DataError(f"a grader is for --method reinforcement, not {method}", hint="drop --grader-file")
    grader_findings, item_fields = _grader(options.grader) if given_grader else ([], ())
    if options.profile is not None and options.profile not in PROFILES:
        raise DataError(f"unknown rule profile {options.profile!r}", hint=f"choose one of {', '.join(PROFILES)}")
    lint_options = LintOptions(
        encoding=info.encoding,
        context_limit=info.training_context,
        expected_kind=kind_of(method),
        method_given=options.method is not None,
        scan_pii=options.pii != "off",
        near_duplicates=options.near_duplicates,
        # an org/name model ftcli knows neither from its catalog nor as a local base is judged as Together's
        last_answer_reasoning_only=local is None and not info.known and "/" in (options.model or ""),
        item_fields=item_fields,
    )
    counter: ExampleCounter
    if local is not None:
        counter, counted_with = TemplateCounter(local.tokenizer), "transformers"
    else:
        encoding = get_counting_encoding(info.encoding, options.counter)
        counter, counted_with = TokenCounter(encoding), encoding.engine
    scan = partial(
        scan_file, options=lint_options, counter=counter, workers=options.workers, chunk_bytes=options.chunk_bytes
    )
    train = scan(train_path)
    val = scan(_readable(validation), options=replace(lint_options, validation=True)) if validation else None
    del counter, scan
    if train_path.stat().st_size > RELEASE_AFTER_BYTES:
        _release_memory()  # counting is done: give tiktoken's ~40 MB back (bpe-openai's tables are static)

    findings = _file_level(train, val, info, method, options, local)
    findings += [(options.grader_file, None, finding) for finding in grader_findings]
    diagnostics = _stamp(findings, options)
    limit = info.training_context
    price = info.price_per_1m_training_tokens
    if method == "reinforcement" and price:
        price = None  # RFT is priced by the hour of training and grading, not by token (a local base stays free)
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
            price=price,
        ),
        largest_examples=tuple((line, count) for count, line in sorted(train.largest, reverse=True)),
    )


def _file_level(
    train: FileScan,
    val: FileScan | None,
    info: ModelInfo,
    method: str,
    options: CheckOptions,
    local: LocalBase | None = None,
) -> list[tuple[str, int | None, Finding]]:
    train_findings = _record_findings(train)
    out: list[tuple[str, int | None, Finding]] = [(train.path, line, f) for line, f in train_findings]
    out += [(train.path, line, f) for line, f in dataset.duplicates(train.columns, near=options.near_duplicates)]
    if len(train.tokens) or not train_findings:
        out += [(train.path, None, f) for f in dataset.too_few(train.examples)]
    if val is not None:
        out += [(val.path, line, f) for line, f in _record_findings(val)]
        out += [(val.path, line, f) for line, f in dataset.overlap(train.columns, val.columns)]
    out += [
        (train.path, None, f)
        for f in model_findings(info, method, named=options.model is not None, today=options.today)
    ]
    reasoning = train.reasoning_examples + (val.reasoning_examples if val else 0)
    why = _reasoning_left_out(info, local)
    if reasoning and why:
        out.append((train.path, None, reasoning_not_trained(info.name, reasoning, why)))
    return out


def _record_findings(scan: FileScan) -> list[tuple[int | None, Finding]]:
    """One file's record findings, judged by that file alone (as `check` on it alone would)."""
    # records of the other format aren't examples, but were judged for a system message too
    judged = scan.examples + sum(1 for _, f in scan.findings if f.code in dataset.FORMAT_MISMATCH_CODES)
    findings = dataset.group_unconverted(scan.findings, scan.records, scan.path)
    return dataset.consistent_system(dataset.one_format(findings, scan.records), judged)


def _grader(definition: Any) -> tuple[list[Finding], tuple[str, ...]]:
    """FT142 when the grader definition isn't valid (a python grader's source is checked, never run), else the
    fields it reads of every record."""
    from ftcli.data.graders.spec import GraderError, parse_grader
    from ftcli.data.graders.template import references

    try:
        grader = parse_grader(definition, where=ROOT)
    except GraderError as exc:
        return [invalid_grader(exc.message)], ()  # what it reads is unknown: no record is judged by it
    return [], tuple(sorted(references(grader)))


def _reasoning_left_out(info: ModelInfo, local: LocalBase | None) -> str | None:
    """Why the model can't train on reasoning traces; None where it can, or where ftcli can't tell (a model it
    doesn't know, as on Together, which trains them on its thinking models)."""
    if local is not None:
        if renders_reasoning(local.tokenizer):  # the encoder training uses renders it, as the job will
            return None
        return f"its chat template has no place for reasoning (it renders no {REASONING_KEY})"
    if info.known:
        return "OpenAI's training format has no field for reasoning, so the traces would be refused or dropped"
    return None


def _stamp(findings: list[tuple[str, int | None, Finding]], options: CheckOptions) -> list[Diagnostic]:
    ignored = options.ignore + (PROFILES[options.profile].ignore if options.profile else ())
    diagnostics = []
    for file, line, finding in findings:
        if options.select and not matches(finding.code, options.select):
            continue
        if ignored and matches(finding.code, ignored):
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


def file_method(path: Path) -> Method | None:
    """The training method a file's records are for, told from its first record (None: no record to tell by). The
    one place both `check` and `train` (without --method) decide it, so the two can't disagree."""
    with path.open("rb") as stream:
        return stream_method(stream)


def stream_method(stream: BinaryIO) -> Method | None:
    """`file_method` of a file's bytes (an uploaded file's content, read back from its backend)."""
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
