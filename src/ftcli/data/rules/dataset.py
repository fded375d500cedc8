"""Dataset-level rules (FT4xx): size, exact and near duplicates, train/validation overlap.

They work on the compact per-example hash columns that the scan keeps, so they cost O(n log n) time and
16 bytes per example whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ftcli.data.columns import ExampleColumns
from ftcli.data.diagnostics import Applicability, Finding, Fix

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MIN_EXAMPLES = 10


def too_few(examples: int) -> Iterator[Finding]:
    if examples < MIN_EXAMPLES:
        yield Finding(
            "FT401",
            f"{examples} example{'s' if examples != 1 else ''}; OpenAI requires at least "
            f"{MIN_EXAMPLES} (50 to 100 well-chosen ones usually help)",
            fix=Fix("add examples"),
        )


def group_legacy(findings: list[tuple[int | None, Finding]], records: int) -> list[tuple[int | None, Finding]]:
    """A legacy file gets one FT102 (at its first such line) instead of one per record."""
    legacy = [line for line, f in findings if f.code == "FT102"]
    if len(legacy) < 2:
        return findings
    first = next(f for _, f in findings if f.code == "FT102")
    grouped = Finding(
        "FT102",
        f"{len(legacy)} of {records} records are legacy prompt/completion, which current chat models do not accept",
        fix=first.fix,
    )
    kept = [(line, f) for line, f in findings if f.code != "FT102"]
    kept.append((legacy[0], grouped))
    return kept


def consistent_system(findings: list[tuple[int | None, Finding]], examples: int) -> list[tuple[int | None, Finding]]:
    """FT230 flags examples that lack the system message the others have; a file with none at all is a choice."""
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
