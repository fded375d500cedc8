"""Converted output, written atomically (data/atomic.py).

A crash or a bad record can never leave a half-written output, and an input is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ftcli.data import atomic
from ftcli.data.errors import DataError


def ensure_writable(output: Path, *, inputs: Iterable[Path], force: bool) -> None:
    """Refuse to overwrite an input (ever) or an existing output (without force)."""
    for source in inputs:
        if source.exists() and output.exists() and os.path.samefile(source, output):
            raise DataError(
                f"{output} is the input file; ftcli never overwrites its input", hint="choose another output path"
            )
        if output.resolve() == source.resolve():
            raise DataError(
                f"{output} is the input file; ftcli never overwrites its input", hint="choose another output path"
            )
    if output.exists() and not force:
        raise DataError(f"{output} already exists", hint="pass --force to replace it")
    if output.exists() and output.is_dir():
        raise DataError(f"{output} is a directory")
    if not output.parent.exists():
        raise DataError(f"{output.parent}: no such directory")


def write_atomic(output: Path, lines: Iterable[str]) -> int:
    """Write `lines` (each ending in a newline) to `output` atomically; returns the bytes written."""
    return atomic.write_atomic(output, (line.encode("utf-8") for line in lines))


def write_bytes_atomic(output: Path, data: bytes) -> int:
    """`data` to `output` atomically (its folder made if needed)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_atomic(output, data)
