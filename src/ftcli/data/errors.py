"""Errors the data core raises for bad input that is not a per-line finding (a missing file, a bad option)."""

from __future__ import annotations


class DataError(Exception):
    """A user-facing problem with input data or options; the CLI prints it without a traceback (exit 2)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class TokenizerIntegrityError(DataError):
    """A shipped tokenizer file does not match its pinned hash: the install is damaged."""
