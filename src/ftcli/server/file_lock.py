"""One holder at a time, across the server's threads and the jobs' worker processes: an exclusive flock on a lock
file. Each `open` is its own lock holder, so two threads of one process exclude each other too."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock file `path` (created if missing, never truncated) for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
