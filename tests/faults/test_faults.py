"""Streaming and fault cases through httpx2.MockTransport: errors explained, keys never shown, no duplicate jobs,
interrupted uploads resumed, waits that ride through transient failures."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from ftcli.service import chat, errors, files, jobs
from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.jobs import JobRequest
from ftcli.service.ledger import Ledger
from tests.faults.fakeapi import FakeAPI, error, job_object

KEY = "sk-fake-0123456789"


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (401, errors.AuthError, "API key"),
        (403, errors.PermissionDenied, "not allowed"),
        (404, errors.NotFound, "not found"),
        (500, errors.BackendError, "backend failed"),
    ],
)
def test_api_errors_are_explained(status: int, kind: type[errors.FtcliError], words: str) -> None:
    api = FakeAPI(faults=[lambda r: error(status, f"Incorrect API key provided: {KEY}")])
    with pytest.raises(kind) as caught:
        jobs.get_job(api.client(), "ftjob-1")
    assert words in caught.value.message
    assert KEY not in caught.value.message and "0123456789" not in str(caught.value)


def test_rate_limit_reports_the_wait() -> None:
    api = FakeAPI(faults=[lambda r: error(429, "slow down", **{"retry-after": "7"})])
    with pytest.raises(errors.RateLimited) as caught:
        jobs.list_jobs(api.client())
    assert caught.value.retry_after == 7.0 and "retry after 7 s" in caught.value.message


def test_timeout_is_a_backend_error() -> None:
    def timeout(request: httpx2.Request) -> None:
        raise httpx2.ReadTimeout("timed out", request=request)

    api = FakeAPI(faults=[timeout])
    with pytest.raises(errors.BackendError, match="did not answer in time"):
        jobs.list_jobs(api.client())


def test_timed_out_create_makes_no_second_job() -> None:
    api = FakeAPI()
    calls = {"n": 0}

    def lose_the_first_answer(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/fine_tuning/jobs") and calls["n"] == 0:
            calls["n"] += 1
            api.faults.remove(lose_the_first_answer)
            api.handle(request)  # the server creates the job ...
            raise httpx2.ReadTimeout("timed out", request=request)  # ... but the answer never arrives
        return None

    api.faults.append(lose_the_first_answer)
    job = jobs.create_job(api.client(max_retries=2), JobRequest(model="gpt-4o-mini", training_file="file-1"))
    assert len(api.jobs) == 1 and job.id == "ftjob-1"
    assert [r for r in api.requests if r[0] == "POST"] == [("POST", "/v1/fine_tuning/jobs")] * 2  # 2 = 1 + replay


def test_a_lost_create_whose_lookup_keeps_failing_is_not_sent_again() -> None:
    """The create's answer is lost and every "did it reach you?" lookup fails: exactly one create is sent, and the
    error names the request's tag and the command that finds the job."""
    api = FakeAPI()

    def fail(request: httpx2.Request) -> httpx2.Response | None:
        if request.method == "POST" and request.url.path.endswith("/fine_tuning/jobs"):
            api.faults.remove(fail)
            api.handle(request)  # the server creates the job ...
            api.requests.pop()  # (one request, noted once)
            api.faults.insert(0, fail)
            raise httpx2.ReadTimeout("timed out", request=request)  # ... the answer is lost
        if request.method == "GET" and request.url.path.endswith("/fine_tuning/jobs"):
            return error(503, "the jobs list is down")  # ... and so is every lookup
        return None

    api.faults.append(fail)
    slept: list[float] = []
    with pytest.raises(errors.BackendError) as caught:
        jobs.create_job(
            api.client(), JobRequest(model="gpt-4o-mini", training_file="file-1"), tag="req0tag", sleep=slept.append
        )
    assert [r for r in api.requests if r[0] == "POST"] == [("POST", "/v1/fine_tuning/jobs")]  # one create, no more
    assert api.requests.count(("GET", "/v1/fine_tuning/jobs")) == jobs.LOOKUPS and slept == [1.0, 2.0]
    message, hint = caught.value.message, caught.value.hint or ""
    assert "may have reached the backend" in message and "not sent again" in message and "req0tag" in message
    assert "ftcli --json status --limit 100 | grep req0tag" in hint
    assert len(api.jobs) == 1


def test_a_lookup_that_fails_once_then_answers_is_enough() -> None:
    api = FakeAPI()
    lookups = {"n": 0}

    def fail(request: httpx2.Request) -> httpx2.Response | None:
        if request.method == "POST" and lookups["n"] == 0:
            raise httpx2.ConnectError("connection refused", request=request)  # never reached the server
        if request.method == "GET" and request.url.path.endswith("/fine_tuning/jobs") and lookups["n"] == 0:
            lookups["n"] += 1
            return error(502, "bad gateway")
        return None

    api.faults.append(fail)
    job = jobs.create_job(api.client(), JobRequest(model="gpt-4o-mini", training_file="file-1"), sleep=lambda _: None)
    assert len(api.jobs) == 1 and job.id == "ftjob-1"
    assert [r for r in api.requests if r[0] == "POST"] == [("POST", "/v1/fine_tuning/jobs")] * 2


def test_create_retries_when_the_server_never_saw_it() -> None:
    api = FakeAPI()

    def refuse_once(request: httpx2.Request) -> None:
        if request.method == "POST":
            api.faults.remove(refuse_once)
            raise httpx2.ConnectError("connection refused", request=request)
        return None

    api.faults.append(refuse_once)
    job = jobs.create_job(api.client(), JobRequest(model="gpt-4o-mini", training_file="file-1", suffix="legal"))
    assert len(api.jobs) == 1 and (job.metadata or {}).get(jobs.REQUEST_TAG)


def test_streamed_chat() -> None:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        for text in ("你好", "，", "world")
    ]
    body = "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    api = FakeAPI(
        faults=[lambda r: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())]
    )
    deltas = list(chat.stream(api.client(), chat.ChatParams(model="m"), [{"role": "user", "content": "hi"}]))
    assert deltas == ["你好", "，", "world"]


def test_dropped_stream_keeps_what_arrived() -> None:
    first = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "partial answer"}, "finish_reason": None}],
    }

    def body():  # type: ignore[no-untyped-def]
        yield f"data: {json.dumps(first)}\n\n".encode()
        raise httpx2.RemoteProtocolError("peer closed connection")

    api = FakeAPI(
        faults=[lambda r: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())]
    )
    received: list[str] = []
    with pytest.raises(errors.StreamInterrupted) as caught:
        for delta in chat.stream(api.client(), chat.ChatParams(model="m"), [{"role": "user", "content": "hi"}]):
            received.append(delta)
    assert received == ["partial answer"] and caught.value.partial == "partial answer"


def test_interrupted_multipart_upload_resumes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes → 10 parts of 1,024
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    ledger = Ledger(tmp_path / "ledger.json")
    api = FakeAPI()

    def drop_the_fourth_part(request: httpx2.Request) -> None:
        if request.url.path.endswith("/parts") and len(api.parts) == 3:
            raise httpx2.WriteError("connection reset", request=request)
        return None

    api.faults.append(drop_the_fourth_part)
    with pytest.raises(errors.BackendError):
        files.upload_file(api.client(), path, ledger=ledger, multipart=True, part_size=1024, parallel=1, wait=False)
    assert len(api.parts) == 3
    api.faults.clear()
    result = files.upload_file(
        api.client(), path, ledger=ledger, multipart=True, part_size=1024, parallel=1, wait=False
    )
    assert result.resumed_parts == 3 and len(api.parts) == 10
    assert api.completed == data  # the right bytes, in order
    assert [r for r in api.requests if r[1] == "/v1/uploads"] == [("POST", "/v1/uploads")]  # one upload, resumed
    again = files.upload_file(api.client(), path, ledger=ledger, multipart=True, part_size=1024, wait=False)
    assert again.reused  # the same bytes are not sent twice


def test_wait_rides_through_faults_and_ends_with_the_final_state() -> None:
    api = FakeAPI(statuses=iter(["running", "running", "succeeded"]))
    api.jobs["ftjob-9"] = job_object("ftjob-9")
    flaky = {"n": 0}

    def every_other_read_fails(request: httpx2.Request) -> httpx2.Response | None:
        if request.method == "GET" and not request.url.path.endswith("/events"):
            flaky["n"] += 1
            if flaky["n"] % 2 == 1:
                return error(503, "overloaded") if flaky["n"] % 4 == 1 else error(429, "slow", **{"retry-after": "1"})
        return None

    api.faults.append(every_other_read_fails)
    slept: list[float] = []
    updates = list(jobs.wait_for_job(OpenAIBackend(api.client()), "ftjob-9", interval=0.01, sleep=slept.append))
    assert [u.status for u in updates] == ["running", "running", "succeeded"]
    assert updates[-1].done and jobs.EXIT_CODES[updates[-1].status] == 0
    assert slept  # backed off instead of failing
