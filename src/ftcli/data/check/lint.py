"""Lint one JSONL line: bytes → findings + the example's token counts and hashes. Pure and per line.

Two steps, so that a caller with many lines can run each over all of them in turn: `read_line` (decode, parse,
record rules, PII, hashes) and `count_line` (tokens and the context limit). Counting a batch of examples in one
run keeps the tokenizer's tables in the CPU caches; interleaved with parsing it runs about 1.5× slower.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ftcli.data.diagnostics import Finding
from ftcli.data.formats.openai import RecordKind, message_reasoning, method_of, record_kind
from ftcli.data.rules import lines
from ftcli.data.rules import tokens as token_rules
from ftcli.data.rules.graders import missing_item_fields
from ftcli.data.rules.model import reasoning_left_out
from ftcli.data.rules.pii import might_contain_pii, scan_text
from ftcli.data.rules.placeholders import unfilled_placeholders
from ftcli.data.rules.records import UNCONVERTED_CODES, check_record, format_mismatch
from ftcli.data.tokens import ExampleCounter, ExampleTokens, iter_texts
from ftcli.data.training_content import earlier_reasoning

BOM = b"\xef\xbb\xbf"
TEMPLATE_LEAVES_IT_OUT = (
    "the base's chat template leaves out there (it keeps reasoning only in the answers after the last user message, "
    "as Qwen3's does), so it would not be trained"
)
TOGETHER_LEAVES_IT_OUT = (
    "would not be trained on Together (it trains a reasoning conversation's last answer only), nor kept by a "
    "Qwen3-style template (it keeps reasoning only after the last user message)"
)
# Near-duplicates ignore case, whitespace and ASCII punctuation; bytes.translate deletes them at C speed.
_IGNORED_BYTES = bytes(range(33)) + b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\x7f"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a cheap test on the line; pairs (emoji) pass it too


@dataclass(frozen=True, slots=True)
class LintOptions:
    encoding: str
    context_limit: int | None
    expected_kind: RecordKind  # "chat", "preference" or "reinforcement": the file's format (method or first record)
    method_given: bool = False  # a mismatch is then FT104 (wrong format for the method), else FT103 (mixed)
    validation: bool = False  # a validation file: `expected_kind` is its training file's format
    scan_pii: bool = True
    near_duplicates: bool = True
    # an org/name model ftcli knows neither from its catalog nor as a local base (Together's names): reasoning before
    # the last answer is flagged (FT321), as Together trains a reasoning conversation's last answer only
    last_answer_reasoning_only: bool = False
    item_fields: tuple[str, ...] = ()  # the fields a reinforcement grader reads of every record ({{item.FIELD}})


@dataclass(slots=True)
class LineResult:
    findings: list[Finding]
    tokens: ExampleTokens | None = None  # None when the line holds no example of the file's format
    exact_hash: int = 0
    near_hash: int = 0
    record: dict[str, Any] | None = None  # read but not yet counted (see count_line)
    kind: str = ""
    reasoning: bool = False  # an assistant message carries reasoning


def lint_line(raw: bytes, line_no: int, options: LintOptions, counter: ExampleCounter) -> LineResult:
    """Both steps for one line."""
    return count_line(read_line(raw, line_no, options, counter), options, counter)


def count_line(result: LineResult, options: LintOptions, counter: ExampleCounter) -> LineResult:
    """Counts the tokens of the example `read_line` left in `result` (in place), with the context-limit rule."""
    record, result.record = result.record, None
    if record is None:
        return result
    tokens = counter.preference(record) if result.kind == "preference" else counter.chat(record)
    if (too_long := token_rules.over_context(tokens.total, options.context_limit)) is not None:
        result.findings.append(too_long)
    if tokens.left_out_reasoning is not None:
        result.findings.append(reasoning_left_out(tokens.left_out_reasoning, TEMPLATE_LEAVES_IT_OUT))
    result.tokens = tokens
    return result


def read_line(raw: bytes, line_no: int, options: LintOptions, counter: ExampleCounter) -> LineResult:
    """Everything but token counting; `counter` only names the special tokens."""
    findings: list[Finding] = []
    if line_no == 1 and raw.startswith(BOM):
        findings.append(lines.byte_order_mark())
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        findings.append(lines.invalid_utf8(raw[exc.start], column=exc.start + 1))
        return LineResult(findings)
    if not text or text.isspace():
        findings.append(lines.blank_line())
        return LineResult(findings)
    try:
        record: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        findings.append(lines.invalid_json(exc.msg, column=exc.colno))
        return LineResult(findings)
    if not isinstance(record, dict):
        findings.append(lines.not_an_object(record))
        return LineResult(findings)
    return _lint_record(record, text, raw, options, counter, findings)


def _lint_record(
    record: dict[str, Any],
    text: str,
    raw: bytes,
    options: LintOptions,
    counter: ExampleCounter,
    findings: list[Finding],
) -> LineResult:
    kind = record_kind(record, method_of(options.expected_kind))
    before = len(findings)
    findings.extend(check_record(record, kind))
    if any(f.code in UNCONVERTED_CODES for f in findings[before:]):
        return LineResult(findings)  # raw data, not an example yet: one finding says how to convert it
    mismatch = format_mismatch(
        kind, options.expected_kind, method_given=options.method_given, validation=options.validation
    )
    if mismatch is not None:
        findings.append(mismatch)
        return LineResult(findings)
    if kind not in ("chat", "preference", "reinforcement"):
        return LineResult(findings)
    if kind == "reinforcement" and options.item_fields:
        findings.extend(missing_item_fields(record, options.item_fields))
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        findings.extend(lines.lone_surrogates(record))
    # Per-string scans run only when a cheap test on the whole line says they could find something.
    special = "<|" in text
    pii = options.scan_pii and might_contain_pii(text)
    if special or pii:
        for path, value in iter_texts(record):
            if special:
                findings.extend(token_rules.special_tokens(counter.special_tokens_in(value), path))
            if pii:
                findings.extend(scan_text(value, path))
    if "{{" in text:
        findings.extend(unfilled_placeholders(record))
    stripped = raw.strip()
    near = _near_hash(stripped) if options.near_duplicates else 0
    reasoning = "reasoning" in text and _has_reasoning(record, kind)
    if reasoning and options.last_answer_reasoning_only and (earlier := earlier_reasoning(record)) is not None:
        findings.append(reasoning_left_out(earlier, TOGETHER_LEAVES_IT_OUT))
    return LineResult(
        findings, exact_hash=_hash(stripped), near_hash=near, record=record, kind=kind, reasoning=reasoning
    )


def _has_reasoning(record: dict[str, Any], kind: str) -> bool:
    if kind != "preference":
        messages = record.get("messages")
    else:
        data = record.get("input")
        messages = [*(data.get("messages") or () if isinstance(data, dict) else ()),
                    *(record.get("preferred_output") or ()), *(record.get("non_preferred_output") or ())]  # fmt: skip
    return any(
        type(m) is dict and m.get("role") == "assistant" and message_reasoning(m) is not None
        for m in (messages if isinstance(messages, list) else ())
    )


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def _near_hash(line: bytes) -> int:
    """Equal for records that differ only in (ASCII) case, spacing or punctuation: keys and JSON syntax are the
    same in every record, so normalising the whole line normalises the texts."""
    return _hash(line.lower().translate(None, _IGNORED_BYTES))
