"""Unpacking a model archive that a backend sends (Together's `.tar.zst`), trusting nothing in it.

tarfile's `filter="data"` is not relied on: on Pythons without the June 2025 fix (CVE-2025-4517: 3.11 < 3.11.13,
3.12 < 3.12.11, 3.13 < 3.13.4) a chain of long symlink names makes it check another path than the one written.
Here every member is judged by its header and written by hand: only regular files and folders with relative names
free of `..`; every folder is made, and every file created (`O_EXCL | O_NOFOLLOW`), relative to a descriptor of
the folder above it, starting from a temporary folder this process made. No name from the archive is ever resolved
by the OS as a whole path, and nothing in it can be a link.

The archive is read as a stream and counted as it goes (a decompression bomb is stopped at the first byte past a
cap, not found afterwards): the unpacked bytes may pass neither `max_bytes` nor `max_ratio` times the archive's own
size (model weights barely compress), the members may not pass `max_members`, and each file must fit on the disk
before it is written. A refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.service.errors import BackendError, FtcliError, UsageError

MiB = 1 << 20
TiB = 1 << 40
ARCHIVE_SUFFIXES = (".tar.zst", ".tzst", ".tar.gz", ".tgz", ".tar")
BYTES_FLAG = "--max-weights-bytes"
MEMBERS_FLAG = "--max-weights-files"
DEFAULT_MAX_BYTES = TiB
DEFAULT_MAX_MEMBERS = 100_000
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_PATH_MAX = 4096  # bytes in a member's whole name
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


@dataclass(frozen=True, slots=True)
class WeightsLimits:
    """Caps on a model a backend sends. The defaults fit the largest model Together fine-tunes (a 405B model's
    merged bf16 weights are about 810 GB in a few hundred files); `ftcli export --max-weights-bytes` and
    `--max-weights-files` raise them."""

    max_bytes: int = DEFAULT_MAX_BYTES  # the download, and the archive once unpacked
    max_members: int = DEFAULT_MAX_MEMBERS  # files and folders in the archive
    max_ratio: int = 20  # unpacked bytes per byte of the archive
    ratio_allowance: int = MiB  # headroom, so that a small archive of text (configs, a tokenizer) may compress well

    def unpacked_cap(self, archive_bytes: int) -> tuple[int, str]:
        """The most bytes an archive of this size may unpack to, and the reason, for the refusal."""
        by_ratio = self.max_ratio * archive_bytes + self.ratio_allowance
        if by_ratio < self.max_bytes:
            reason = (
                f"{self.max_ratio} times the archive's own {archive_bytes:,} bytes: model weights barely compress, "
                "so this is a decompression bomb or not a model"
            )
            return by_ratio, reason
        return self.max_bytes, f"the cap of {self.max_bytes:,} bytes (raise it with {BYTES_FLAG})"


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before writing `needed` bytes under `folder` when its disk has less room."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FtcliError(
            f"{what} needs {needed:,} bytes but {folder} has {free:,} free; nothing written",
            hint="free some space, or choose another --out",
        )


def unpack_weights(archive: Path, folder: Path, limits: WeightsLimits | None = None) -> Path | None:
    """Unpack a weights archive (.tar.zst as Together sends, .tar.gz or .tar) into `folder` (replaced if there):
    an archive of one folder (as Together packs a model) gives that folder's contents. None for a file that is not
    an archive. A member that is not a plain file or folder, or whose name leaves the folder, and any cap passed,
    raise BackendError naming it, and leave nothing unpacked."""
    if not is_archive(archive.name):
        return None
    limits = limits or WeightsLimits()
    archive_bytes = archive.stat().st_size
    cap, reason = limits.unpacked_cap(archive_bytes)
    declared = _declared_size(archive)
    if declared is not None and declared > cap:
        raise BackendError(f"{archive.name} says it unpacks to {declared:,} bytes, more than {reason}; not unpacked")
    ensure_free_space(folder.parent, declared or archive_bytes, f"unpacking {archive.name}")
    for stale in folder.parent.glob(f".{folder.name}.unpacking-*"):  # left by a process that was killed
        shutil.rmtree(stale, ignore_errors=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.unpacking-", dir=folder.parent))
    try:
        root = os.open(temp, _FOLDER_FLAGS)
        try:
            with _tar_stream(archive, cap, reason) as (tar, counted):
                _extract(tar, counted, root, temp, archive.name, limits)
        finally:
            os.close(root)
        entries = list(temp.iterdir())
        single = len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink()
        inner = entries[0] if single else temp
        shutil.rmtree(folder, ignore_errors=True)
        inner.rename(folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # gone already when the archive was not one folder
    return folder


class _CappedReader:
    """The decompressed tar stream, counted: reading past `cap` bytes raises at once. Reads are at most 1 MiB, so
    no request (a forged header's size) makes the decompressor allocate more."""

    def __init__(self, stream: Any, cap: int, refusal: str) -> None:
        self.stream, self.cap, self.refusal = stream, cap, refusal
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        wanted = MiB if size is None or size < 0 else min(size, MiB)
        data: bytes = self.stream.read(min(wanted, self.cap - self.count + 1))
        self.count += len(data)
        if self.count > self.cap:
            raise BackendError(self.refusal)
        return data

    def room(self) -> int:
        return self.cap - self.count


@contextmanager
def _tar_stream(archive: Path, cap: int, reason: str) -> Iterator[tuple[tarfile.TarFile, _CappedReader]]:
    """The archive as a tar stream, decompressed as it is read and counted against `cap`; a damaged archive is a
    BackendError wherever it shows."""
    import gzip
    import zlib

    name = archive.name.lower()
    refusal = f"{archive.name} unpacks to more than {reason}; stopped, nothing kept"
    with archive.open("rb") as raw:
        stream: Any = raw
        # ValueError: tarfile's answer to some malformed headers (a pax number that is not one)
        damaged: tuple[type[BaseException], ...] = (
            tarfile.TarError,
            EOFError,
            ValueError,
            zlib.error,
            gzip.BadGzipFile,
        )
        if name.endswith((".tar.zst", ".tzst")):
            try:
                import zstandard
            except ImportError:
                raise UsageError(
                    f"{archive} is a zstd archive: unpacking it needs zstandard", hint="pip install 'ftcli[together]'"
                ) from None
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
            damaged += (zstandard.ZstdError,)
        elif name.endswith((".tar.gz", ".tgz")):
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        counted = _CappedReader(stream, cap, refusal)
        try:
            with tarfile.open(fileobj=counted, mode="r|") as tar:  # type: ignore[call-overload]
                yield tar, counted
        except damaged as exc:
            raise BackendError(f"{archive.name} is damaged or not an archive ({exc}); nothing kept") from None
        finally:
            if stream is not raw:
                stream.close()


def _extract(
    tar: tarfile.TarFile, counted: _CappedReader, root: int, temp: Path, archive: str, limits: WeightsLimits
) -> None:
    written = 0  # what the files' headers say they hold: a member can't claim less than it writes
    for members, member in enumerate(tar, start=1):
        if members > limits.max_members:
            raise BackendError(
                f"{archive} holds more than {limits.max_members:,} files and folders; stopped, nothing kept",
                hint=f"if it is a real model, raise {MEMBERS_FLAG}",
            )
        parts = _member_parts(archive, member)
        if member.type == tarfile.DIRTYPE:
            if parts:  # "./" is the archive's own top
                os.close(_folder(root, parts, archive, member.name))
        elif member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and parts:
            if member.sparse is not None or any(key.startswith("GNU.sparse") for key in member.pax_headers):
                # its holes are written without being read from the stream: the counting reader would not see them
                raise _refused(archive, member.name, "it is a sparse file; only plain files and folders are unpacked")
            written += member.size
            if member.size > counted.room() or written > counted.cap:
                raise BackendError(counted.refusal)  # its header says so already: nothing of it is written
            ensure_free_space(temp, member.size, f"{member.name!r} in {archive}")
            _write(tar, member, root, parts, archive)
        else:
            kind = _KINDS.get(member.type, f"of tar type {member.type!r}") if parts else "a file without a name"
            raise _refused(archive, member.name, f"it is {kind}; only plain files and folders are unpacked")


def _member_parts(archive: str, member: tarfile.TarInfo) -> list[str]:
    """The member's name as folder names and a file name, each plain; refused when it could leave the folder."""
    name = member.name
    if "\x00" in name:
        raise _refused(archive, name, "its name holds a NUL byte")
    if name.startswith("/"):
        raise _refused(archive, name, "its name is an absolute path")
    if len(os.fsencode(name)) > _PATH_MAX:
        raise _refused(archive, name[:80] + "…", f"its name is longer than {_PATH_MAX} bytes")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refused(archive, name, "its name climbs out with '..'")
    if any(len(os.fsencode(part)) > _NAME_MAX for part in parts):
        raise _refused(archive, name[:80] + "…", f"a part of its name is longer than {_NAME_MAX} bytes")
    return parts


def _folder(root: int, parts: list[str], archive: str, name: str) -> int:
    """A descriptor of the folder `parts` under `root`, each level made if missing and opened without following a
    link, relative to the one above."""
    current = os.dup(root)
    try:
        for part in parts:
            with suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=current)
            child = os.open(part, _FOLDER_FLAGS, dir_fd=current)
            os.close(current)
            current = child
    except OSError as exc:
        os.close(current)
        raise _refused(archive, name, f"its folder can't be made ({exc.strerror})") from None
    return current


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, root: int, parts: list[str], archive: str) -> None:
    parent = _folder(root, parts[:-1], archive, member.name)
    try:
        fd = os.open(parts[-1], _FILE_FLAGS, 0o644, dir_fd=parent)
    except FileExistsError:
        raise _refused(archive, member.name, "it is in the archive twice (or is also a folder)") from None
    except OSError as exc:
        raise _refused(archive, member.name, f"it can't be created ({exc.strerror})") from None
    finally:
        os.close(parent)
    source = tar.extractfile(member)
    with os.fdopen(fd, "wb") as sink:
        if source is None:
            return
        while block := source.read(MiB):
            try:
                sink.write(block)
            except OSError as exc:
                raise FtcliError(f"writing {member.name!r} of {archive} failed: {exc.strerror}") from None


def _refused(archive: str, member: str, why: str) -> BackendError:
    return BackendError(
        f"{archive}: member {member!r} refused: {why}; nothing unpacked",
        hint="the backend sent an archive that is not a plain model folder: report it, or unpack it by hand",
    )


def _declared_size(archive: Path) -> int | None:
    """The unpacked size a zstd archive declares in its first frame's header, where it does."""
    if not archive.name.lower().endswith((".tar.zst", ".tzst")):
        return None
    try:
        import zstandard

        with archive.open("rb") as raw:
            size = zstandard.get_frame_parameters(raw.read(18)).content_size
    except Exception:  # no zstandard (refused later, with its hint), or a damaged header (found while reading)
        return None
    unknown = (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR)
    return size if isinstance(size, int) and size not in unknown else None
