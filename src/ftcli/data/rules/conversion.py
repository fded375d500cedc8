"""Findings `convert` reports about its input (they have codes of their own, like check's, so a person can look them
up with `ftcli rules`): binary-feedback labels it won't silently train as chat, empty prompts, placeholders."""

from __future__ import annotations

from ftcli.data.diagnostics import Finding, Fix


def kto_labels(location: str, labelled: int, records: int, column: str) -> Finding:
    """FT107 for a whole input: convert refuses KTO data unless told what to make of it."""
    return Finding(
        "FT107",
        f"{labelled} of {records} records carry a true/false {column!r} (binary-feedback, KTO data; first at "
        f"{location}): written as chat, the answers labelled false would be trained as targets",
        fix=Fix(
            "--kto-to dpo pairs each prompt's desirable and undesirable answers into preference records; "
            "--kto-to sft keeps only the desirable answers"
        ),
    )


def empty_prompt(field: str) -> Finding:
    """FT233: a record whose prompt is empty; refused unless --allow-empty-prompt keeps it as an assistant-only
    example."""
    return Finding(
        "FT233",
        "is empty: the answer would answer nothing",
        path=field,
        fix=Fix("--allow-empty-prompt writes it as an example with no user message"),
    )


def empty_prompts_kept(count: int, first: str) -> Finding:
    return Finding(
        "FT233",
        f"{count} record{'s' * (count != 1)} with an empty prompt written as examples with no user message "
        f"(first at {first})",
    )


def placeholders_written(count: int, first: str, names: list[str]) -> Finding:
    return Finding(
        "FT234",
        f"{count} record{'s hold' if count != 1 else ' holds'} unfilled template placeholders "
        f"({', '.join(names[:5])}; first at {first})",
        fix=Fix("fill them in before training: the model would learn the braces"),
    )
