"""Grader rules (FT141, FT142) for reinforcement data checked with `--grader-file`: the grader must be a valid
definition, and every record must hold each field the grader reads of it (`{{item.FIELD}}`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ftcli.data.diagnostics import Finding, Fix

ROOT = "grader"  # what a grader's JSON paths start with in its errors (the file's root)


def missing_item_fields(record: dict[str, Any], fields: tuple[str, ...]) -> Iterator[Finding]:
    """FT141 for each field (a dotted path: `{{item.a.b}}` reads "a.b") the record lacks."""
    from ftcli.data.graders.template import has_reference

    for field in fields:
        if not has_reference(record, field):
            yield Finding(
                "FT141",
                f"the grader reads {{{{item.{field}}}}}, which this record lacks",
                path=field,
                fix=Fix(f"give every record the field {field!r}, or change the grader"),
            )


def invalid_grader(message: str) -> Finding:
    """FT142 from a GraderError's message ("grader.operation: …"): its JSON path under the grader's root as the
    finding's path (None for the grader as a whole)."""
    head, sep, rest = message.partition(": ")
    if sep and (head == ROOT or head.startswith((f"{ROOT}.", f"{ROOT}["))):
        return Finding("FT142", rest, path=head.removeprefix(ROOT).removeprefix(".") or None)
    return Finding("FT142", message)
