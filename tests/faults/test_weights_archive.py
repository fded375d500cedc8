"""A weights archive from a hostile or spoofed backend (issue 29, points 1 and 2): nothing it holds may land outside
the export, whatever this Python's tarfile does (CVE-2025-4517 defeats `filter="data"` on 3.11 < 3.11.13), and a
decompression bomb is stopped while it streams. Every refusal names the member or the cap, and leaves nothing."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ftcli.service import weights_archive
from ftcli.service.errors import BackendError, FtcliError
from ftcli.service.weights_archive import WeightsLimits, unpack_weights


def tar_bytes(members: list[tuple[str, bytes, Any]]) -> bytes:
    """A tar of (name, type, content): bytes for a file, a link target for a link, None otherwise."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = content
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def cve_2025_4517(target: str) -> bytes:
    """The shape of the public CVE-2025-4517 proof of concept: folders with 247-character names, each reached by a
    one-letter symlink, so that the chain `a/b/…/p` resolves to a path past PATH_MAX, where `os.path.realpath` (and
    so the `data` filter) stops resolving; a link up through that chain, then `escape` pointing through it to
    `target` (relative to the extraction folder), and a file written through `escape`."""
    long_name, steps, path = "d" * 247, "abcdefghijklmnop", ""
    members: list[tuple[str, bytes, Any]] = []
    for step in steps:
        members.append((os.path.join(path, long_name), tarfile.DIRTYPE, None))
        members.append((os.path.join(path, step), tarfile.SYMTYPE, long_name))
        path = os.path.join(path, long_name)
    chain = os.path.join(*steps, "l" * 254)
    members.append((chain, tarfile.SYMTYPE, "../" * len(steps)))
    members.append(("escape", tarfile.SYMTYPE, f"{chain}/{target}"))
    members.append(("escape/pwned", tarfile.REGTYPE, b"written outside\n"))
    members.append(("escape/victim.txt", tarfile.REGTYPE, b"overwritten\n"))
    return tar_bytes(members)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zst_streamed(write: Callable[[Any], None]) -> bytes:
    """zstd without the unpacked size in its header (as a streaming packer writes it)."""
    buffer = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(buffer, closefd=False) as sink:
        write(sink)
    return buffer.getvalue()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """`export/ft-1/weights` under tmp_path, with a victim two folders above the export's weights."""
    folder = tmp_path / "export" / "ft-1" / "weights"
    folder.mkdir(parents=True)
    (tmp_path / "export" / "victim.txt").write_text("original\n")
    return folder


def everything(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def refused_cleanly(tmp_path: Path, weights: Path, archive: Path) -> None:
    """Nothing but the archive itself in the weights folder, nothing new anywhere, the victim untouched."""
    assert sorted(p.name for p in weights.iterdir()) == [archive.name]
    assert everything(tmp_path) == [
        "export",
        "export/ft-1",
        "export/ft-1/weights",
        f"export/ft-1/weights/{archive.name}",
        "export/victim.txt",
    ]
    assert (tmp_path / "export" / "victim.txt").read_text() == "original\n"


def test_the_cve_2025_4517_archive_writes_nothing_outside(tmp_path: Path, weights: Path) -> None:
    archive = weights / "legal-adapter.tar.zst"
    # from weights/adapter.unpacking-…, `../../..` is export/: the victim is two folders above the unpacked model
    archive.write_bytes(zst(cve_2025_4517("../../..")))
    assert archive.stat().st_size < 4096  # a small download, as in the report
    with pytest.raises(BackendError, match=r"member 'a' refused: it is a symbolic link") as caught:
        unpack_weights(archive, weights / "adapter")
    assert "nothing unpacked" in caught.value.message
    refused_cleanly(tmp_path, weights, archive)


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([("m/config.json", tarfile.REGTYPE, b"{}"), ("m/x", tarfile.SYMTYPE, "/etc/passwd")], "'m/x'.*symbolic link"),
        ([("m/a", tarfile.REGTYPE, b"a"), ("m/b", tarfile.LNKTYPE, "m/a")], "'m/b'.*hard link"),
        ([("../x", tarfile.REGTYPE, b"x")], r"'\.\./x'.*climbs out"),
        ([("m/../../x", tarfile.REGTYPE, b"x")], r"'m/\.\./\.\./x'.*climbs out"),
        ([("/tmp/ftcli-absolute-x", tarfile.REGTYPE, b"x")], "absolute path"),
        ([("m/null", tarfile.CHRTYPE, None)], "character device"),
        ([("m/disk", tarfile.BLKTYPE, None)], "block device"),
        ([("m/pipe", tarfile.FIFOTYPE, None)], "FIFO"),
        ([("m/a", tarfile.REGTYPE, b"1"), ("m/a", tarfile.REGTYPE, b"2")], "'m/a'.*twice"),
        ([("m/a", tarfile.REGTYPE, b"1"), ("m/a/b", tarfile.REGTYPE, b"2")], "'m/a/b'.*can't be made"),
    ],
    ids=[
        "symlink",
        "hardlink",
        "dotdot",
        "inner-dotdot",
        "absolute",
        "chardev",
        "blockdev",
        "fifo",
        "twice",
        "file-as-folder",
    ],
)
def test_anything_but_plain_files_and_folders_is_refused(
    tmp_path: Path, weights: Path, members: list[tuple[str, bytes, Any]], says: str
) -> None:
    archive = weights / "model.tar.zst"
    archive.write_bytes(zst(tar_bytes(members)))
    with pytest.raises(BackendError, match=says):
        unpack_weights(archive, weights / "adapter")
    refused_cleanly(tmp_path, weights, archive)
    assert not Path("/tmp/ftcli-absolute-x").exists()


def test_a_refusal_replaces_nothing_already_unpacked(tmp_path: Path, weights: Path) -> None:
    """A previous export's model stays as it was when a later archive is refused."""
    (weights / "adapter").mkdir()
    (weights / "adapter" / "adapter_config.json").write_text("{}")
    archive = weights / "model.tar.zst"
    archive.write_bytes(zst(tar_bytes([("m/a", tarfile.REGTYPE, b"1"), ("m/l", tarfile.SYMTYPE, "a")])))
    with pytest.raises(BackendError, match="symbolic link"):
        unpack_weights(archive, weights / "adapter")
    assert sorted(p.name for p in weights.iterdir()) == ["adapter", "model.tar.zst"]
    assert (weights / "adapter" / "adapter_config.json").read_text() == "{}"


@pytest.mark.parametrize("suffix", [".tar.zst", ".tar.gz", ".tar"])
@pytest.mark.parametrize("top", ["legal-adapter/", "./legal-adapter/"])
def test_a_model_folder_unpacks_as_together_packs_it(weights: Path, suffix: str, top: str) -> None:
    import gzip

    safetensors = os.urandom(300_000)  # weights: they barely compress
    packed = tar_bytes(
        [
            (top.rstrip("/"), tarfile.DIRTYPE, None),
            (top + "adapter_config.json", tarfile.REGTYPE, b'{"r": 8}'),
            (top + "adapter_model.safetensors", tarfile.REGTYPE, safetensors),
            (top + "tokenizer/", tarfile.DIRTYPE, None),
            (top + "tokenizer/tokenizer.json", tarfile.REGTYPE, b'{"model": {}}' * 2000),  # text compresses well
        ]
    )
    archive = weights / f"legal-adapter{suffix}"
    packers: dict[str, Callable[[bytes], bytes]] = {".tar.zst": zst, ".tar.gz": gzip.compress, ".tar": bytes}
    archive.write_bytes(packers[suffix](packed))
    folder = unpack_weights(archive, weights / "adapter")
    assert folder == weights / "adapter"
    assert (folder / "adapter_model.safetensors").read_bytes() == safetensors
    assert (folder / "adapter_config.json").read_text() == '{"r": 8}'
    assert (folder / "tokenizer" / "tokenizer.json").stat().st_size == 26_000
    assert sorted(p.name for p in weights.iterdir()) == ["adapter", archive.name]  # no temporary folder left


def test_a_damaged_archive_is_refused_and_leaves_nothing(tmp_path: Path, weights: Path) -> None:
    archive = weights / "model.tar.zst"
    archive.write_bytes(zst(tar_bytes([("m/a", tarfile.REGTYPE, b"1" * 5000)]))[:-40])
    with pytest.raises(BackendError, match="damaged"):
        unpack_weights(archive, weights / "adapter")
    refused_cleanly(tmp_path, weights, archive)


def sparse_files(count: int, each: int) -> bytes:
    """A tar of `count` GNU sparse (pax 1.0) files of `each` bytes that are all hole: a few hundred bytes each in the
    archive, whose holes tarfile writes without reading them from the stream."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(count):
            info = tarfile.TarInfo(f"m/GNUSparseFile.0/f{index}")
            info.pax_headers = {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": f"m/f{index}",
                "GNU.sparse.realsize": str(each),
            }
            sparse_map = b"1\n0\n0\n".ljust(512, b"\0")  # one region: offset 0, 0 bytes; the rest is hole
            info.size = len(sparse_map)
            tar.addfile(info, io.BytesIO(sparse_map))
    return buffer.getvalue()


def test_sparse_members_are_refused_before_their_holes_are_written(
    tmp_path: Path, weights: Path, written: list[str]
) -> None:
    """The review's bypass: 300 sparse files of 1 MB in a 5 KB archive wrote 69 MB past the ratio cap, because holes
    are never read from the counted stream."""
    archive = weights / "sparse.tar.zst"
    archive.write_bytes(zst(sparse_files(300, 1_000_000)))
    assert archive.stat().st_size < 64 << 10
    with pytest.raises(BackendError, match="sparse file"):
        unpack_weights(archive, weights / "adapter")
    assert written == []
    refused_cleanly(tmp_path, weights, archive)


def test_a_malformed_pax_number_is_a_damaged_archive_not_a_crash(tmp_path: Path, weights: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("m/f")
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "abc"}
        tar.addfile(info, io.BytesIO(b""))
    archive = weights / "odd.tar.zst"
    archive.write_bytes(zst(buffer.getvalue()))
    with pytest.raises(BackendError):
        unpack_weights(archive, weights / "adapter")
    refused_cleanly(tmp_path, weights, archive)


# -- decompression bombs ---------------------------------------------------------------------------------------


def zero_files(count: int, each: int) -> Callable[[Any], None]:
    """Write a tar of `count` files of `each` zero bytes, a block at a time (nothing large in memory)."""

    def write(sink: Any) -> None:
        with tarfile.open(fileobj=sink, mode="w|") as tar:
            for index in range(count):
                info = tarfile.TarInfo(f"bomb/{index:04}.safetensors")
                info.size = each
                tar.addfile(info, io.BytesIO(bytes(each)))

    return write


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the unpacking started to write, in order (to see where it stopped)."""
    names: list[str] = []
    original = weights_archive._write

    def spy(tar: Any, member: tarfile.TarInfo, *args: Any) -> None:
        names.append(member.name)
        original(tar, member, *args)

    monkeypatch.setattr(weights_archive, "_write", spy)
    return names


def test_a_bomb_past_twenty_times_its_size_is_stopped_while_it_streams(
    tmp_path: Path, weights: Path, written: list[str]
) -> None:
    archive = weights / "bomb.tar.zst"
    archive.write_bytes(zst_streamed(zero_files(64, 4 << 20)))  # 256 MiB of "weights"
    assert archive.stat().st_size < 64 << 10
    limits = WeightsLimits(ratio_allowance=2 << 20)
    with pytest.raises(BackendError, match="more than 20 times the archive's own") as caught:
        unpack_weights(archive, weights / "adapter", limits)
    assert "decompression bomb" in caught.value.message
    assert len(written) == 0  # the first file's header already passes the cap: not a byte of it was written
    refused_cleanly(tmp_path, weights, archive)


def test_the_byte_cap_stops_the_stream_at_the_first_byte_past_it(
    tmp_path: Path, weights: Path, written: list[str]
) -> None:
    archive = weights / "bomb.tar.zst"
    archive.write_bytes(zst_streamed(zero_files(64, 1 << 20)))  # 64 MiB in files of 1 MiB
    limits = WeightsLimits(max_bytes=3 << 20, max_ratio=1_000_000)
    with pytest.raises(BackendError, match=r"more than the cap of 3,145,728 bytes \(raise it with --max-weights-bytes"):
        unpack_weights(archive, weights / "adapter", limits)
    assert written == ["bomb/0000.safetensors", "bomb/0001.safetensors"]  # the third would pass 3 MiB: stopped
    refused_cleanly(tmp_path, weights, archive)


def test_headers_count_too(tmp_path: Path, weights: Path) -> None:
    """Every byte of the tar stream is counted, not only the files' contents: 3000 empty files with long names
    (each with its own pax record) pass a 1 MiB cap."""
    archive = weights / "bomb.tar.zst"
    long_names = [(f"m/{'n' * 200}{index:06}", tarfile.REGTYPE, b"") for index in range(3000)]  # headers only
    archive.write_bytes(zst(tar_bytes(long_names)))
    with pytest.raises(BackendError, match="more than the cap of 1,048,576 bytes"):
        unpack_weights(archive, weights / "adapter", WeightsLimits(max_bytes=1 << 20, max_ratio=1_000_000))
    refused_cleanly(tmp_path, weights, archive)


def test_too_many_members_are_refused_naming_the_flag(tmp_path: Path, weights: Path, written: list[str]) -> None:
    archive = weights / "many.tar.zst"
    archive.write_bytes(zst(tar_bytes([(f"m/{index}", tarfile.REGTYPE, b"") for index in range(50)])))
    with pytest.raises(BackendError, match="more than 10 files and folders") as caught:
        unpack_weights(archive, weights / "adapter", WeightsLimits(max_members=10))
    assert "--max-weights-files" in (caught.value.hint or "") and len(written) == 10
    refused_cleanly(tmp_path, weights, archive)


def test_a_declared_size_past_the_cap_is_refused_before_unpacking(
    tmp_path: Path, weights: Path, written: list[str]
) -> None:
    archive = weights / "bomb.tar.zst"
    archive.write_bytes(zst(bytes(64 << 20)))  # one-shot zstd writes the unpacked size in its header
    with pytest.raises(BackendError, match="says it unpacks to 67,108,864 bytes"):
        unpack_weights(archive, weights / "adapter")
    assert written == []
    refused_cleanly(tmp_path, weights, archive)


def test_too_little_free_space_is_refused_first(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    archive = weights / "model.tar.zst"
    archive.write_bytes(zst(tar_bytes([("m/a.safetensors", tarfile.REGTYPE, os.urandom(50_000))])))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(FtcliError, match=r"needs [\d,]+ bytes but .* has 1,000 free"):
        unpack_weights(archive, weights / "adapter")
    refused_cleanly(tmp_path, weights, archive)


def test_a_file_that_no_longer_fits_stops_the_unpacking(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free space is checked again before each file: one too big for what is left stops it, nothing kept."""
    import shutil

    archive = weights / "model.tar.zst"
    members = [("m/a.safetensors", tarfile.REGTYPE, os.urandom(30_000)), ("m/b.safetensors", tarfile.REGTYPE,
               bytes(90_000))]  # fmt: skip
    archive.write_bytes(zst_streamed(lambda sink: sink.write(tar_bytes(members))))  # its size not declared
    assert archive.stat().st_size < 80_000  # so the first check (free space for the archive's size) passes
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=80_000))
    with pytest.raises(FtcliError, match="'m/b.safetensors' in model.tar.zst needs 90,000 bytes"):
        unpack_weights(archive, weights / "adapter")
    refused_cleanly(tmp_path, weights, archive)
