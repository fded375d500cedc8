"""Web pages the user opens can't drive `ftcli serve` (issue 12), each attack reproduced against a running server
without a key, the way a browser would send it, and shown refused:

- DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends `Host: rebind.attacker.example:PORT`
  and would let the page read the answers (the training data);
- a cross-site "simple" request: `Content-Type: text/plain` needs no CORS preflight, so any page could POST a job;
- a cross-site multipart upload from `Origin: https://evil.example`.

The server's own page (same origin), the SDK and curl (no Origin) keep working."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2
import pytest

from tests.e2e.conftest import Server
from tests.local.zorbia import chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local]
JOB = '{"model": "ftcli/tiny", "training_file": "%s"}'


@pytest.fixture
def http(server: Server) -> httpx2.Client:
    with httpx2.Client(base_url=server.url, headers=server.auth, timeout=30) as client:
        yield client


@pytest.fixture
def uploaded(http: httpx2.Client) -> str:
    response = http.post("/files", files={"file": ("t.jsonl", chat_jsonl().encode())}, data={"purpose": "fine-tune"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_a_rebound_host_name_reads_nothing(server: Server, http: httpx2.Client, uploaded: str) -> None:
    port = urlsplit(server.url).port
    for path in ("/files", f"/files/{uploaded}/content", "/fine_tuning/jobs"):
        attack = http.get(path, headers={"host": f"rebind.attacker.example:{port}"})
        assert attack.status_code == 403 and "DNS rebinding" in attack.json()["error"]["message"]
        assert "Zorbia" not in attack.text
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):  # the server's own names
        assert http.get(f"/files/{uploaded}/content", headers={"host": name}).status_code == 200


def test_a_cross_site_text_plain_post_creates_no_job(http: httpx2.Client, uploaded: str) -> None:
    before = len(http.get("/fine_tuning/jobs").json()["data"])
    plain = http.post("/fine_tuning/jobs", content=JOB % uploaded, headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    cross = http.post(
        "/fine_tuning/jobs",
        content=JOB % uploaded,
        headers={"content-type": "text/plain", "origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    for route in ("/chat/completions", "/uploads"):
        assert http.post(route, content="{}", headers={"content-type": "text/plain"}).status_code == 415
    assert len(http.get("/fine_tuning/jobs").json()["data"]) == before
    bad = http.post("/fine_tuning/jobs", content="{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("the request body is not valid JSON")


def test_a_cross_site_upload_is_refused_and_stores_nothing(server: Server, http: httpx2.Client) -> None:
    before = {f["id"] for f in http.get("/files").json()["data"]}
    for origin in ("https://evil.example", "null", f"http://rebind.attacker.example:{urlsplit(server.url).port}"):
        attack = http.post(
            "/files",
            files={"file": ("stolen.jsonl", b'{"messages": []}\n')},
            data={"purpose": "fine-tune"},
            headers={"origin": origin},
        )
        assert attack.status_code == 403, origin
    assert {f["id"] for f in http.get("/files").json()["data"]} == before


def test_the_servers_own_page_still_works(server: Server, http: httpx2.Client) -> None:
    origin = server.url.removesuffix("/v1")
    page = http.get(origin + "/", headers={"origin": origin})
    assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]  # only its own script and style run; no page may frame it
    assert "frame-ancestors 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    listed = http.get("/files", headers={"origin": origin})
    assert listed.status_code == 200 and listed.json()["object"] == "list"


def test_a_chat_cant_ask_for_more_than_the_server_allows(http: httpx2.Client) -> None:
    # Attack: one request asking for a million tokens, or sending a prompt far past the model's context, would hold
    # the generation lock (and the CPU) for everyone else
    ask = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "hi"}]}
    for key in ("max_tokens", "max_completion_tokens"):
        huge = http.post("/chat/completions", json={**ask, key: 1_000_000})
        assert huge.status_code == 400 and huge.json()["error"]["param"] == key
        assert "at most 4096" in huge.json()["error"]["message"]
    for bad in (0, -5, "many", True):
        assert http.post("/chat/completions", json={**ask, "max_tokens": bad}).status_code == 400
    long = {"model": "ftcli/tiny", "messages": [{"role": "user", "content": "word " * 20_000}], "max_tokens": 8}
    refused = http.post("/chat/completions", json=long)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert http.post("/chat/completions", json={**ask, "max_tokens": 4}).status_code == 200  # within limits: served
