"""Dataset-level rules (FT4xx): size, exact and near duplicates, train/validation overlap.

They work on the compact per-example hash columns that the scan keeps, so they cost O(n log n) time and
16 bytes per example whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ftcli.data.columns import ExampleColumns
from ftcli.data.diagnostics import Applicability, Finding, Fix
from ftcli.data.formats.raw import converted_name, shell_word
from ftcli.data.rules.records import CONVERT_PREFIX, UNCONVERTED_CODES

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MIN_EXAMPLES = 10
FORMAT_MISMATCH_CODES = ("FT103", "FT104")


def too_few(examples: int) -> Iterator[Finding]:
    if examples < MIN_EXAMPLES:
        yield Finding(
            "FT401",
            f"{examples} example{'s' if examples != 1 else ''}; OpenAI requires at least "
            f"{MIN_EXAMPLES} (50 to 100 well-chosen ones usually help)",
            fix=Fix("add examples"),
        )


def group_unconverted(
    findings: list[tuple[int | None, Finding]], records: int, file: str
) -> list[tuple[int | None, Finding]]:
    """A file of raw records gets one finding per kind of record (at its first line) instead of one per record, its
    fix naming the file itself: `ftcli convert data.json -o data.chat.jsonl --preset alpaca`."""
    groups: dict[tuple[str, str], list[tuple[int | None, Finding]]] = {}
    kept: list[tuple[int | None, Finding]] = []
    for line, finding in findings:
        if finding.code in UNCONVERTED_CODES:
            key = (finding.code, finding.message if finding.code != "FT110" else "")
            groups.setdefault(key, []).append((line, finding))
        else:
            kept.append((line, finding))
    for (code, _), group in groups.items():
        line, first = group[0]
        message = first.message
        if code == "FT102" and len(group) > 1:
            message = (
                f"{len(group)} of {records} records are legacy prompt/completion, which current chat models do not "
                "accept"
            )
        elif code == "FT110" and len(group) > 1:
            message = f"{len(group)} of {records} records have no 'messages' ({first.message.split('(', 1)[1]}"
        elif len(group) > 1:
            message = f"{len(group)} of {records} records: {message}"
        fix = first.fix and Fix(_for_file(first.fix.hint, file), first.fix.applicability)
        kept.append((line, Finding(code, message, path=first.path if len(group) == 1 else None, fix=fix)))
    return kept


def _for_file(hint: str, file: str) -> str:
    return hint.replace(CONVERT_PREFIX, f"ftcli convert {shell_word(file)} -o {shell_word(converted_name(file))}")


def one_format(findings: list[tuple[int | None, Finding]], records: int) -> list[tuple[int | None, Finding]]:
    """A file whose every record is of the other method's format (FT103/FT104: a DPO file under --method sft, a
    validation file of the other format) gets one finding at its first line instead of one per record."""
    mismatched = [(line, f) for line, f in findings if f.code in FORMAT_MISMATCH_CODES]
    if not records or len(mismatched) < records or len({(f.code, f.message) for _, f in mismatched}) != 1:
        return findings  # a mixed file: each odd record is named by its line
    line, first = mismatched[0]
    whole = Finding(first.code, f"{records} of {records} records: {first.message}", fix=first.fix)
    return [(line, whole), *((n, f) for n, f in findings if f.code not in FORMAT_MISMATCH_CODES)]


def consistent_system(findings: list[tuple[int | None, Finding]], examples: int) -> list[tuple[int | None, Finding]]:
    """FT230 flags examples that lack the system message the others have; a file with none at all is a choice.
    (Each file on its own: a validation file is judged by its own examples, as if checked alone.)"""
    missing = sum(1 for _, f in findings if f.code == "FT230")
    if examples and missing >= examples:
        return [(line, f) for line, f in findings if f.code != "FT230"]
    return findings


def duplicates(columns: ExampleColumns, *, near: bool) -> list[tuple[int, Finding]]:
    lines, exact_hashes, near_hashes = columns.to_numpy()
    exact = list(_repeats(exact_hashes, lines))
    found = [
        (
            line,
            Finding("FT402", f"exact duplicate of line {first}", fix=Fix("ftcli convert --dedup", Applicability.SAFE)),
        )
        for line, first in exact
    ]
    if near:
        exact_lines = {line for line, _ in exact}
        found += [
            (line, Finding("FT403", f"near-duplicate of line {first} (differs only in case, spacing or punctuation)"))
            for line, first in _repeats(near_hashes, lines)
            if line not in exact_lines
        ]
    return found


def overlap(train: ExampleColumns, val: ExampleColumns) -> list[tuple[int, Finding]]:
    import numpy as np

    train_lines, train_hashes, _ = train.to_numpy()
    val_lines, val_hashes, _ = val.to_numpy()
    if not train_hashes.size or not val_hashes.size:
        return []
    order = np.argsort(train_hashes, kind="stable")
    sorted_hashes = train_hashes[order]
    positions = np.searchsorted(sorted_hashes, val_hashes).clip(max=len(sorted_hashes) - 1)
    hits = np.nonzero(sorted_hashes[positions] == val_hashes)[0]
    return [
        (
            int(val_lines[i]),
            Finding(
                "FT404",
                f"also in the training file (line {int(train_lines[order[positions[i]]])})",
                fix=Fix("ftcli convert --split keeps the two apart"),
            ),
        )
        for i in hits.tolist()
    ]


def _repeats(values: npt.NDArray[np.int64], line_numbers: npt.NDArray[np.uint32]) -> Iterator[tuple[int, int]]:
    """(line, first line with the same hash) for every example after the first of its group, in line order.

    Memory: one sorted copy of the hashes to find the repeated values (usually few), then a mask; no argsort.
    """
    import numpy as np

    if values.size < 2:
        return
    ordered = np.sort(values)
    repeated_values = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if repeated_values.size == 0:
        return
    first_line: dict[int, int] = {}
    for index in np.flatnonzero(np.isin(values, repeated_values)).tolist():
        value, line = int(values[index]), int(line_numbers[index])
        if value in first_line:
            yield line, first_line[value]
        else:
            first_line[value] = line
