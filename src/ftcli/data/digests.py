"""sha256 (and md5 when asked) of a byte stream fed block by block, the two on two threads.

hashlib releases the GIL while it hashes a large block, so md5 on a helper thread runs beside sha256 (and beside
the caller's reads and writes): both digests of a 1 GB file cost about as much as the slower one alone.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any


class Digests:
    def __init__(self, *, md5: bool = False) -> None:
        import hashlib

        self._sha256 = hashlib.sha256()
        self._md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="md5") if md5 else None
        self._pending: Future[None] | None = None

    def update(self, block: bytes) -> None:
        if self._helper is not None:
            if self._pending is not None:
                self._pending.result()  # one block in flight: order kept, memory bounded
            self._pending = self._helper.submit(self._md5.update, block)
        self._sha256.update(block)

    def hexdigests(self) -> tuple[str, str | None]:
        """(sha256, md5 or None) of everything fed so far."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._sha256.hexdigest(), self._md5.hexdigest() if self._md5 is not None else None

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=True)

    def __enter__(self) -> Digests:
        return self

    def __exit__(self, *_exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


def file_digests(path: Path, *, md5: bool = False) -> tuple[str, str | None]:
    """(sha256, md5 or None) of a file: one read, the two hashed side by side."""
    with Digests(md5=md5) as digests, path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digests.update(block)
        return digests.hexdigests()


def file_sha256(path: Path) -> str:
    return file_digests(path)[0]
