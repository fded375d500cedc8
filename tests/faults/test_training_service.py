"""`train` as service operations (service/training.py), without the CLI: a local file is checked, uploaded once with
its progress reported, and the job started once with its run manifest; bad data never reaches the backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.client import make_client
from ftcli.service.errors import CheckFailed
from ftcli.service.ledger import Ledger
from ftcli.service.manifest import RunManifest
from ftcli.service.settings import Settings
from ftcli.service.training import TrainingOptions, prepare, start
from tests.conftest import qa
from tests.faults.fakeapi import FakeAPI


@pytest.fixture
def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def client(fake: FakeAPI) -> Iterator[object]:
    with httpx2.Client(transport=fake.transport()) as http:
        yield make_client(Settings(kind="openai", api_key="sk-test"), http_client=http, max_retries=0)


def _progress(seen: dict[str, int]) -> Callable[[Path], object]:
    @contextmanager
    def bar(path: Path) -> Iterator[Callable[[int], None]]:
        seen[path.name] = 0

        def advance(sent: int) -> None:
            seen[path.name] += sent

        yield advance

    return bar


def test_a_local_file_is_checked_uploaded_once_and_the_job_started_with_its_manifest(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # run manifests go to ./.ftcli/runs
    data = write_jsonl([qa(i) for i in range(12)])
    ledger, seen = Ledger(tmp_path / "ledger.json"), {}
    options = TrainingOptions(model="gpt-4.1-mini-2025-04-14", file=str(data), n_epochs=2, metadata={"team": "legal"})
    prepared = prepare(OpenAIBackend(client), options, ledger=ledger, progress=_progress(seen))  # type: ignore[arg-type]
    assert seen == {data.name: data.stat().st_size}  # every byte reported to the caller's progress
    assert prepared.report is not None and prepared.report.examples == 12
    assert fake.contents[prepared.training.file_id] == data.read_bytes()
    assert prepared.request.n_epochs == 2 and prepared.request.method == "sft"

    job = start(OpenAIBackend(client), prepared, described={"kind": "openai"})  # type: ignore[arg-type]
    assert fake.requests.count(("POST", "/v1/fine_tuning/jobs")) == 1
    manifest = RunManifest.load(job.id)
    assert manifest is not None and manifest.training_file["sha256"] == prepared.training.sha256
    assert manifest.training_file["path"] == str(data)
    assert manifest.check is not None and (manifest.check["examples"], manifest.check["errors"]) == (12, 0)

    again = prepare(OpenAIBackend(client), options, ledger=ledger)  # type: ignore[arg-type]
    assert again.training.file_id == prepared.training.file_id  # identical bytes: reused, not sent twice
    assert fake.requests.count(("POST", "/v1/files")) == 1


def test_a_file_with_errors_never_reaches_the_backend(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    data = write_jsonl([qa(1), "{not json", json.dumps({"messages": []})])
    with pytest.raises(CheckFailed, match="line 2"):
        prepare(OpenAIBackend(client), TrainingOptions(model="gpt-4.1-mini-2025-04-14", file=str(data)))  # type: ignore[arg-type]
    assert fake.requests == []


def test_an_uploaded_file_id_is_used_as_it_is(fake: FakeAPI, client: object) -> None:
    options = TrainingOptions(model="gpt-4.1-mini-2025-04-14", file="file-abc", validation_file="file-def")
    prepared = prepare(OpenAIBackend(client), options)  # type: ignore[arg-type]
    assert (prepared.training.file_id, prepared.training.report) == ("file-abc", None)
    assert prepared.validation is not None and prepared.validation.file_id == "file-def"
    assert fake.requests == []
