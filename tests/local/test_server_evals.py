"""`ftcli serve` keeps the eval runs `ftcli eval` posts (issue 16) for its web page: posted, listed newest first,
opened by id; an id that isn't one of the server's is 404, never a path; a body that isn't a report is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server.app import create_app  # noqa: E402

pytestmark = [pytest.mark.local]
REPORT = {
    "data": "golden.jsonl",
    "cases": 2,
    "models": [{"model": "ftcli/tiny", "asked": 2, "graders": {"chrf": {"n": 2, "mean": 0.25, "ci95": [0.1, 0.4]}}}],
    "failures": ["ftcli/tiny: chrf 0.2500 < 0.5"],
}
ROWS = [{"line": 1, "model": "ftcli/tiny", "reference": "Quellan.", "answer": "<script>x</script>", "chrf": 0.25}]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path / "data"), base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def test_runs_are_posted_listed_and_opened(client: TestClient, tmp_path: Path) -> None:
    first = client.post("/ftcli/evals", json={"report": REPORT, "cases": ROWS})
    assert first.status_code == 200, first.text
    second = client.post("/ftcli/evals", json={"report": {**REPORT, "data": "other.jsonl"}, "cases": []}).json()
    listed = client.get("/ftcli/evals").json()["data"]
    assert [run["data"] for run in listed] == ["other.jsonl", "golden.jsonl"] and "rows" not in listed[0]
    opened = client.get(f"/ftcli/evals/{first.json()['id']}").json()
    assert opened["rows"] == ROWS and opened["failures"] == REPORT["failures"]  # kept as data, shown as text
    assert second["object"] == "ftcli.eval" and (tmp_path / "data" / "evals" / f"{second['id']}.json").is_file()


@pytest.mark.parametrize("attack", ["..%2F..%2Fetc%2Fpasswd", "eval-../../x", "eval-0000", "evals"])
def test_only_the_servers_own_ids_open_a_run(client: TestClient, attack: str) -> None:
    assert client.get(f"/ftcli/evals/{attack}").status_code == 404


def test_a_body_that_is_not_a_report_is_refused(client: TestClient) -> None:
    assert client.post("/ftcli/evals", json={"cases": []}).status_code == 400
    assert client.post("/ftcli/evals", content=b"report", headers={"content-type": "text/plain"}).status_code == 415


def test_a_run_is_deleted_by_its_id(client: TestClient, tmp_path: Path) -> None:
    """`DELETE /ftcli/evals/{id}` (the page's delete button): the run's file goes, and it is gone from the list."""
    kept = client.post("/ftcli/evals", json={"report": REPORT, "cases": ROWS}).json()["id"]
    gone = client.post("/ftcli/evals", json={"report": REPORT, "cases": ROWS}).json()["id"]
    deleted = client.delete(f"/ftcli/evals/{gone}")
    assert deleted.status_code == 200 and deleted.json() == {"id": gone, "object": "ftcli.eval", "deleted": True}
    assert [run["id"] for run in client.get("/ftcli/evals").json()["data"]] == [kept]
    assert client.get(f"/ftcli/evals/{gone}").status_code == 404
    assert not (tmp_path / "data" / "evals" / f"{gone}.json").exists()
    again = client.delete(f"/ftcli/evals/{gone}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "eval_not_found"


@pytest.mark.parametrize("attack", ["..%2F..%2Fetc%2Fpasswd", "eval-../../x", "eval-0000"])
def test_only_the_servers_own_ids_delete_a_run(client: TestClient, attack: str) -> None:
    assert client.delete(f"/ftcli/evals/{attack}").status_code == 404


def test_a_run_damaged_on_disk_leaves_the_list_working_and_can_be_deleted(client: TestClient, tmp_path: Path) -> None:
    good = client.post("/ftcli/evals", json={"report": REPORT, "cases": ROWS}).json()["id"]
    damaged = "eval-00000000000000ff"
    (tmp_path / "data" / "evals" / f"{damaged}.json").write_text(json.dumps({"id": damaged, "cases": "abc"}))
    assert [run["id"] for run in client.get("/ftcli/evals").json()["data"]] == [good]
    opened = client.get(f"/ftcli/evals/{damaged}")
    assert opened.status_code == 500 and opened.json()["error"]["code"] == "eval_damaged"
    assert client.delete(f"/ftcli/evals/{damaged}").status_code == 200
