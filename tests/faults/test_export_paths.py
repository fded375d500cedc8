"""`ftcli export` against a hostile backend (issue 12): ids the backend returns become folder and file names, so a
job id `../../escaped` or a file id `../../../escaped2/x` named `evil.pth` must not write outside the export."""

from __future__ import annotations

from pathlib import Path

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
