"""`-` as an input path: spool stdin to a private temporary file so the data core can read it by range."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def spooled_input(name: str) -> Iterator[Path]:
    if name != "-":
        yield Path(name)
        return
    with tempfile.TemporaryDirectory(prefix="ftcli-stdin-") as folder:
        path = Path(folder) / "stdin.jsonl"
        with path.open("wb") as sink:
            shutil.copyfileobj(sys.stdin.buffer, sink, 1 << 20)
        yield path
