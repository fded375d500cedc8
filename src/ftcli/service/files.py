"""Uploads: check first, stream with progress, reuse identical content, and resumable multipart uploads.

Files up to `MULTIPART_THRESHOLD` go through `files.create` in one streamed request. Bigger ones (or on request)
go through the Uploads API in parts sent in parallel; each finished part is recorded in the ledger, so a rerun
after an interruption sends only the missing parts.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.data.digests import file_digests
from ftcli.service.errors import CheckFailed, FtcliError, NotFound, UsageError, translated
from ftcli.service.ledger import Ledger

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types import FileObject

    from ftcli.data.check.engine import CheckOptions
    from ftcli.data.check.report import Report

MULTIPART_THRESHOLD = 512 * 1024 * 1024
PART_SIZE = 64 * 1024 * 1024
MIME_TYPE = "text/jsonl"
ProgressCallback = Callable[[int], None]  # bytes sent (or received) since the last call: every transfer's progress


@dataclass(frozen=True, slots=True)
class UploadResult:
    file: FileObject
    sha256: str
    reused: bool  # the backend already had these bytes: nothing was sent
    multipart: bool
    resumed_parts: int = 0  # parts a previous, interrupted run had already sent


def check_before_upload(
    path: Path,
    options: CheckOptions | None = None,
    *,
    validation: Path | None = None,
    skip_option: str | None = "--no-check",
) -> Report:
    """Run `check` (on `validation` too, as `check --validation` does); refuse with the first diagnostics when the
    files have errors, the hint naming the first error's fix, the `check` command that lists them all and the option
    that skips the check (`skip_option`, where the command has one). (A local base is counted with its own tokenizer
    and chat template, cut at `options.max_seq_length` as its job will be.)"""
    from ftcli.data.check.engine import check_file
    from ftcli.data.diagnostics import Severity
    from ftcli.data.formats.raw import shell_word

    report = check_file(path, validation=validation, options=options)
    if report.errors:
        first = next(d for d in report.diagnostics if d.severity is Severity.ERROR)
        words = ["ftcli", "check", str(path)]
        if validation is not None:
            words += ["--validation", str(validation)]
        if options is not None and options.method is not None:
            words += ["--method", options.method]
        if options is not None and options.grader is not None:
            words += ["--grader-file", options.grader_file]
        hints = [
            first.fix.hint if first.fix else None,
            f"`{' '.join(shell_word(w) for w in words)}` lists them all",
            f"or pass {skip_option}" if skip_option else None,
        ]
        named = f"{path} and {validation} have" if validation is not None else f"{path} has"
        raise CheckFailed(
            f"{named} {report.errors} error(s): {'; '.join(report.first_errors())}",
            hint="; ".join(hint for hint in hints if hint),
        )
    return report


def upload_file(
    client: OpenAI,
    path: Path,
    *,
    ledger: Ledger | None = None,
    force: bool = False,
    multipart: bool | None = None,
    part_size: int = PART_SIZE,
    parallel: int = 4,
    on_progress: ProgressCallback | None = None,
    purpose: str = "fine-tune",
    wait: bool = True,
    wait_timeout: float = 600.0,
) -> UploadResult:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    use_multipart = multipart if multipart is not None else size > MULTIPART_THRESHOLD
    sha256, md5 = file_digests(path, md5=use_multipart)  # sha256: the dedup key; md5: the Uploads API's check
    if ledger is not None and not force:
        reused = _reuse(client, ledger, sha256)
        if reused is not None:
            return UploadResult(reused, sha256, reused=True, multipart=False)
    if use_multipart:
        parts = _Parts(path, size, sha256, md5 or "", part_size, parallel)
        file, resumed = _multipart(client, parts, ledger, on_progress, purpose)
    else:
        file, resumed = _single(client, path, on_progress, purpose), 0
    if wait:
        file = wait_until_processed(client, file.id, timeout=wait_timeout)
    if ledger is not None:
        ledger.remember_file(sha256, file.id, filename=path.name, size=size)
    return UploadResult(file, sha256, reused=False, multipart=use_multipart, resumed_parts=resumed)


def _reuse(client: OpenAI, ledger: Ledger, sha256: str) -> FileObject | None:
    import openai

    file_id = ledger.file_id(sha256)
    if file_id is None:
        return None
    with translated():
        try:
            file = client.files.retrieve(file_id)
        except openai.NotFoundError:
            ledger.forget_file(sha256)  # deleted remotely: upload again
            return None
    return None if getattr(file, "status", None) == "error" else file


def _single(client: OpenAI, path: Path, on_progress: ProgressCallback | None, purpose: str) -> FileObject:
    with path.open("rb") as raw, translated():
        stream = ProgressReader(raw, on_progress)
        return client.files.create(file=(path.name, stream, MIME_TYPE), purpose=purpose)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Parts:
    """A file cut into parts for the Uploads API, with its digests."""

    path: Path
    size: int
    sha256: str
    md5: str
    part_size: int
    parallel: int


def _multipart(
    client: OpenAI,
    parts: _Parts,
    ledger: Ledger | None,
    on_progress: ProgressCallback | None,
    purpose: str,
) -> tuple[FileObject, int]:
    import openai

    path, size, sha256, part_size, parallel = parts.path, parts.size, parts.sha256, parts.part_size, parts.parallel

    pending = ledger.pending_upload(sha256) if ledger else None
    if pending and pending.get("part_size") == part_size:
        upload_id, done = str(pending["upload_id"]), {int(k): str(v) for k, v in pending["parts"].items()}
    else:
        with translated():
            upload = client.uploads.create(bytes=size, filename=path.name, mime_type=MIME_TYPE, purpose=purpose)  # type: ignore[arg-type]
        upload_id, done = upload.id, {}
        if ledger:
            ledger.start_upload(sha256, upload_id, part_size=part_size)
    count = max(1, -(-size // part_size))
    resumed = len(done)
    if on_progress and done:
        on_progress(sum(min(part_size, size - i * part_size) for i in done))

    def send(index: int) -> tuple[int, str]:
        with path.open("rb") as raw:
            part = SliceReader(raw, index * part_size, min(part_size, size - index * part_size), on_progress)
            result = client.uploads.parts.create(upload_id, data=(f"{path.name}.part{index}", part))  # type: ignore[arg-type]
        if ledger:
            ledger.part_done(sha256, index, result.id)
        return index, result.id

    with translated():
        try:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                for index, part_id in pool.map(send, [i for i in range(count) if i not in done]):
                    done[index] = part_id
            completed = client.uploads.complete(upload_id, part_ids=[done[i] for i in range(count)], md5=parts.md5)
        except (openai.NotFoundError, openai.BadRequestError):
            if pending and ledger:  # the stored upload expired or was cancelled: start over, once
                ledger.drop_upload(sha256)
                return _multipart(client, parts, ledger, on_progress, purpose)
            raise
    if completed.file is None:
        raise FtcliError(f"upload {upload_id} completed without a file (status {completed.status})")
    return completed.file, resumed


def wait_until_processed(
    client: OpenAI,
    file_id: str,
    *,
    timeout: float = 600.0,
    interval: float = 1.0,
    sleep: Callable[[float], None] | None = None,
) -> FileObject:
    import openai

    sleep = sleep or time.sleep
    deadline = time.monotonic() + timeout
    while True:
        with translated():
            try:
                file = client.files.retrieve(file_id)
            except openai.NotFoundError:
                raise NotFound(f"file {file_id} disappeared while processing") from None
        status = getattr(file, "status", None)
        if status == "error":
            details = getattr(file, "status_details", None) or "no details"
            raise FtcliError(f"the backend could not process {file_id}: {details}")
        if status in (None, "processed") or time.monotonic() > deadline:
            return file
        sleep(interval)


class ProgressReader(io.RawIOBase):
    """A readable file wrapper that reports bytes as the HTTP client pulls them (the SDK streams file objects)."""

    def __init__(self, raw: Any, on_progress: ProgressCallback | None) -> None:
        self._raw = raw
        self._on_progress = on_progress
        self.name = getattr(raw, "name", "file")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self._raw.tell())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._raw.read(size)
        if data and self._on_progress:
            self._on_progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class SliceReader(ProgressReader):
    """`length` bytes of a file from `start`: one part of a multipart upload, streamed, never held in memory."""

    def __init__(self, raw: Any, start: int, length: int, on_progress: ProgressCallback | None) -> None:
        super().__init__(raw, on_progress)
        self._start, self._length = start, length
        raw.seek(start)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._length}[whence]
        position = max(0, min(self._length, base + offset))
        self._raw.seek(self._start + position)
        return position

    def tell(self) -> int:
        return int(self._raw.tell()) - self._start

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self.tell()
        size = remaining if size is None or size < 0 else min(size, remaining)
        return super().read(size) if size > 0 else b""
