"""`ftcli export` against a hostile backend (issue 12): ids the backend returns become folder and file names, so a
job id `../../escaped` or a file id `../../../escaped2/x` named `evil.pth` must not write outside the export."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from tests.faults.fakeapi import FakeAPI, job_object


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return fake


def _written_outside(tmp_path: Path) -> list[Path]:
    export = tmp_path / "a" / "b" / "c" / "out"
    return [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(export)]


def test_a_job_id_that_climbs_out_is_refused(api: FakeAPI, tmp_path: Path) -> None:
    api.jobs["../../escaped"] = job_object("../../escaped", status="succeeded")
    result = CliRunner().invoke(app, ["export", "--out", "out"])
    assert result.exit_code == 1 and "job id that can't be a file name: '../../escaped'" in result.stderr
    assert _written_outside(tmp_path) == [] and not list(tmp_path.rglob("escaped*"))


def test_a_file_id_that_climbs_out_is_refused(api: FakeAPI, tmp_path: Path) -> None:
    evil = "../../../escaped2/x"
    api.jobs["ftjob-1"] = job_object("ftjob-1", status="succeeded", training_file=evil)
    api.files[evil] = {"id": evil, "object": "file", "bytes": 3, "created_at": 1, "filename": "evil.pth",
                       "purpose": "fine-tune", "status": "processed"}  # fmt: skip
    api.contents[evil] = b"pwn"
    result = CliRunner().invoke(app, ["export", "--out", "out"])
    assert result.exit_code == 1 and "file id that can't be a file name" in result.stderr
    assert _written_outside(tmp_path) == [] and not list(tmp_path.rglob("evil.pth"))
    assert not list(tmp_path.rglob("escaped2"))


# -- `export --weights` from a hostile Together (issue 29): the archive and its download ------------------------

TOGETHER_JOB = {"id": "ft-legal", "status": "completed", "model": "m", "training_file": "file-1",
                "created_at": "2026-12-01T10:00:00Z"}  # fmt: skip


class HostileTogether:
    """A Together that sends `archive` as the job's weights (with or without its Content-Length)."""

    def __init__(self, archive: bytes, *, length: bool = True) -> None:
        self.archive, self.length = archive, length
        self.downloads = 0

    def handle(self, request: Any) -> Any:
        import httpx2

        path = request.url.path.removeprefix("/v1")
        if path == "/finetune/download":
            self.downloads += 1
            headers = {"content-disposition": 'attachment; filename="legal-adapter.tar.zst"'}
            if self.length:
                return httpx2.Response(200, headers=headers, content=self.archive)
            return httpx2.Response(200, headers=headers, stream=httpx2.ByteStream(self.archive))
        answers: dict[str, Any] = {
            "/fine-tunes": {"data": [TOGETHER_JOB]},
            "/fine-tunes/ft-legal": TOGETHER_JOB,
            "/fine-tunes/ft-legal/events": {"data": []},
            "/fine-tunes/ft-legal/metrics": {"metrics": []},
            "/fine-tunes/ft-legal/checkpoints": {"data": []},
            "/files/file-1": {"id": "file-1", "filename": "legal.jsonl", "bytes": 3},
        }
        if path == "/files/file-1/content":
            return httpx2.Response(200, content=b"{}\n")
        return httpx2.Response(200, json=answers[path]) if path in answers else httpx2.Response(404, json={})


@pytest.fixture
def together(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[HostileTogether], None]:
    """`ftcli export` talks to the given fake Together; the working folder is tmp_path/a/b/c."""
    import httpx2

    from ftcli.service.backends.together import TogetherBackend
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    settings = Settings(kind="together", base_url="https://api.together.test/v1", api_key="tgp_v1_hostileTestKey")
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(context.AppContext, "settings", lambda self: settings)

    def use(fake: HostileTogether) -> None:
        http = httpx2.Client(transport=httpx2.MockTransport(fake.handle))
        backend = TogetherBackend(make_client(settings, max_retries=0, http_client=http))
        monkeypatch.setattr(context.AppContext, "backend", lambda self: backend)

    return use


def _weights_left(tmp_path: Path) -> list[str]:
    folder = tmp_path / "a" / "b" / "c" / "out" / "ft-legal" / "weights"
    return sorted(p.name for p in folder.iterdir())


def test_export_refuses_the_cve_archive_and_keeps_nothing_of_it(
    together: Callable[[HostileTogether], None], tmp_path: Path
) -> None:
    from tests.faults.test_weights_archive import cve_2025_4517, zst

    (tmp_path / "a" / "victim.txt").write_text("original\n")
    fake = HostileTogether(zst(cve_2025_4517("../../../../..")))  # from out/ft-legal/weights/.adapter…: a/
    together(fake)
    result = CliRunner().invoke(app, ["export", "--out", "out", "--weights", "adapter"])
    assert result.exit_code == 1 and "member 'a' refused: it is a symbolic link" in result.stderr
    assert "Traceback" not in result.output
    assert _written_outside(tmp_path) == [tmp_path / "a" / "victim.txt"]
    assert (tmp_path / "a" / "victim.txt").read_text() == "original\n"
    assert _weights_left(tmp_path) == []  # the archive is gone too, and no .unpacking folder
    manifest = (tmp_path / "a" / "b" / "c" / "out" / "manifest.json").read_text()
    assert "weights" not in manifest


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_a_download_past_max_weights_bytes_stops_and_keeps_nothing(
    together: Callable[[HostileTogether], None], tmp_path: Path, length: bool
) -> None:
    fake = HostileTogether(os.urandom(300_000), length=length)
    together(fake)
    result = CliRunner().invoke(
        app, ["--json", "export", "--out", "out", "--weights", "adapter", "--max-weights-bytes", "100K"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = json.loads(result.stderr)["error"]
    assert "weights are over 102,400 bytes" in error["message"] and "--max-weights-bytes" in error["hint"]
    assert _weights_left(tmp_path) == []  # no .part left to resume a download that was refused


def test_a_model_within_a_raised_cap_is_exported(together: Callable[[HostileTogether], None], tmp_path: Path) -> None:
    from tests.faults.test_weights_archive import tar_bytes, zst

    model = os.urandom(200_000)
    together(HostileTogether(zst(tar_bytes([("legal-adapter/adapter_model.safetensors", b"0", model)]))))
    result = CliRunner().invoke(app, ["export", "--out", "out", "--weights", "adapter", "--max-weights-bytes", "1M"])
    assert result.exit_code == 0, result.output
    assert _weights_left(tmp_path) == ["adapter", "legal-adapter.tar.zst"]
    unpacked = tmp_path / "a" / "b" / "c" / "out" / "ft-legal" / "weights" / "adapter" / "adapter_model.safetensors"
    assert unpacked.read_bytes() == model


@pytest.mark.parametrize("value", ["lots", "0", "-5G", "1.5G"])
def test_a_bad_max_weights_bytes_is_a_usage_error(value: str) -> None:
    result = CliRunner().invoke(app, ["export", "--out", "out", "--weights", "adapter", "--max-weights-bytes", value])
    assert result.exit_code == 2 and "--max-weights-bytes" in result.output and "Traceback" not in result.output


def test_a_download_that_does_not_fit_on_the_disk_is_refused_before_it_starts(
    together: Callable[[HostileTogether], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    fake = HostileTogether(os.urandom(300_000))
    together(fake)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    result = CliRunner().invoke(app, ["export", "--out", "out", "--weights", "adapter"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the download of ft-legal's weights needs 300,000 bytes" in result.stderr
    assert _weights_left(tmp_path) == [] and fake.downloads == 1
