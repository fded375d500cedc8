"""Token rules (FT301, FT310): examples past the model's training context, special tokens in text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ftcli.data.diagnostics import Finding, Fix


def over_context(tokens: int, limit: int | None) -> Finding | None:
    """Called for every example: a plain test, no generator."""
    if limit is None or tokens <= limit:
        return None
    return Finding(
        "FT301",
        f"{tokens:,} tokens; the model trains on at most {limit:,} per example (the rest is cut off)",
        fix=Fix("shorten or split the example"),
    )


def special_tokens(found: Iterable[str], path: str) -> Iterator[Finding]:
    for token in found:
        yield Finding("FT310", f"special token {token} in text", path=path)
