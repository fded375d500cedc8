"""Atomic output: write to a temporary file beside the target, fsync, then rename over it.

A crash or a bad record can never leave a half-written output, and an input is never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

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
    return _write(output, (line.encode("utf-8") for line in lines))


def write_bytes_atomic(output: Path, data: bytes) -> int:
    """`data` to `output` atomically (its folder made if needed): a temp file beside it, fsynced, renamed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return _write(output, (data,))


def _write(output: Path, blocks: Iterable[bytes]) -> int:
    handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    written = 0
    try:
        with os.fdopen(handle, "wb") as stream:
            for data in blocks:
                stream.write(data)
                written += len(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o644 & ~_umask())
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
