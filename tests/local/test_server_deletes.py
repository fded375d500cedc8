"""Deleting a file or a model removes its bytes from the disk (issue 12), but never bytes something else still holds:
another file with the same content, a job that still reads the file, a folder the server didn't write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.store import Store  # noqa: E402

pytestmark = [pytest.mark.local]
LOCAL = "http://127.0.0.1:8765"
RECORD = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(data_dir), base_url=LOCAL) as test_client:
        yield test_client


def _upload(client: TestClient, data: bytes) -> dict[str, str]:
    response = client.post("/v1/files", files={"file": ("a.jsonl", data)}, data={"purpose": "fine-tune"})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _blobs(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "blobs").iterdir() if not p.name.startswith("."))


def test_deleting_a_file_removes_its_bytes_once_no_file_holds_them(client: TestClient, data_dir: Path) -> None:
    first, twin = _upload(client, b"same bytes\n"), _upload(client, b"same bytes\n")
    other = _upload(client, b"other bytes\n")
    assert len(_blobs(data_dir)) == 2  # identical bytes are stored once

    assert client.delete(f"/v1/files/{first['id']}").json()["deleted"] is True
    assert len(_blobs(data_dir)) == 2  # the twin still holds them
    assert client.get(f"/v1/files/{twin['id']}/content").content == b"same bytes\n"

    client.delete(f"/v1/files/{twin['id']}")
    assert len(_blobs(data_dir)) == 1  # gone from the disk, not only from the list
    assert client.get(f"/v1/files/{twin['id']}/content").status_code == 404
    assert client.get(f"/v1/files/{other['id']}/content").content == b"other bytes\n"
    assert client.delete(f"/v1/files/{twin['id']}").status_code == 404

    again = _upload(client, b"same bytes\n")  # the same bytes uploaded after the delete are whole again
    assert client.get(f"/v1/files/{again['id']}/content").content == b"same bytes\n"


def test_a_file_a_job_still_reads_cannot_be_deleted_under_it(client: TestClient, data_dir: Path) -> None:
    training = _upload(client, (RECORD + "\n").encode())
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    store.save_job({"id": "ftjob-reader", "status": "queued", "created_at": 0, "training_file": training["id"]})
    refused = client.delete(f"/v1/files/{training['id']}")
    assert refused.status_code == 409
    assert "ftjob-reader" in refused.json()["error"]["message"]
    assert client.get(f"/v1/files/{training['id']}/content").status_code == 200

    store.update_job("ftjob-reader", status="cancelled")
    assert client.delete(f"/v1/files/{training['id']}").status_code == 200
    assert _blobs(data_dir) == []


def test_deleting_a_model_removes_its_adapter_and_nothing_outside_the_runs(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    adapter = data_dir / "runs" / "ftjob-1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    store.add_model("ft:ftcli/tiny:local::ftjob-1", base="ftcli/tiny", adapter=adapter, job_id="ftjob-1")
    # a row naming a folder outside the server's runs (never written by the server itself): its files are kept
    elsewhere = tmp_path / "users-own-model"
    elsewhere.mkdir()
    (elsewhere / "adapter_model.safetensors").write_bytes(b"precious")
    store.add_model("ft:ftcli/tiny:local::ftjob-2", base="ftcli/tiny", adapter=elsewhere, job_id="ftjob-2")

    assert client.delete("/v1/models/ft:ftcli/tiny:local::ftjob-1").json()["deleted"] is True
    assert not adapter.exists()
    assert client.get("/v1/models/ft:ftcli/tiny:local::ftjob-1").status_code == 404
    assert client.delete("/v1/models/ft:ftcli/tiny:local::ftjob-2").status_code == 200
    assert (elsewhere / "adapter_model.safetensors").read_bytes() == b"precious"
    assert client.delete("/v1/models/ft:ftcli/tiny:local::ftjob-2").status_code == 404
