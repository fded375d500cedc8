"""What this machine has uploaded to each backend: file ids by content hash, and unfinished multipart uploads.

One JSON file per backend (named by `Settings.backend_id`, never by key) in the user's data directory, rewritten
atomically. It lets `upload` reuse a file already on the backend and resume an interrupted multipart upload.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftcli.data.atomic import write_atomic


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("FTCLI_DATA_DIR"):
        return Path(env["FTCLI_DATA_DIR"])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ftcli"


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # parts finish on several threads

    @classmethod
    def for_backend(cls, backend_id: str, env: Mapping[str, str] | None = None) -> Ledger:
        return cls(data_dir(env) / "backends" / f"{backend_id}.json")

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps(data, indent=1).encode("utf-8"), private=True)

    def file_id(self, sha256: str) -> str | None:
        entry = self._load().get("files", {}).get(sha256)
        return entry.get("file_id") if isinstance(entry, dict) else None

    @contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """The ledger's data to change in place, saved when the block ends (one change at a time: parts finish on
        several threads)."""
        with self._lock:
            data = self._load()
            yield data
            self._save(data)

    def remember_file(self, sha256: str, file_id: str, *, filename: str, size: int) -> None:
        with self._changing() as data:
            data.setdefault("files", {})[sha256] = {"file_id": file_id, "filename": filename, "bytes": size}
            data.get("uploads", {}).pop(sha256, None)

    def forget_file(self, sha256: str) -> None:
        with self._changing() as data:
            data.get("files", {}).pop(sha256, None)

    def pending_upload(self, sha256: str) -> dict[str, Any] | None:
        entry = self._load().get("uploads", {}).get(sha256)
        return entry if isinstance(entry, dict) else None

    def start_upload(self, sha256: str, upload_id: str, *, part_size: int) -> None:
        with self._changing() as data:
            data.setdefault("uploads", {})[sha256] = {"upload_id": upload_id, "part_size": part_size, "parts": {}}

    def part_done(self, sha256: str, index: int, part_id: str) -> None:
        with self._changing() as data:
            entry = data.get("uploads", {}).get(sha256)
            if isinstance(entry, dict):
                entry.setdefault("parts", {})[str(index)] = part_id

    def drop_upload(self, sha256: str) -> None:
        with self._changing() as data:
            data.get("uploads", {}).pop(sha256, None)
