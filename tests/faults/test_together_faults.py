"""The Together backend's faults through httpx2.MockTransport (a small in-memory Together): a create whose answer
is lost makes one job, not two; 429 waits as long as Retry-After says; a job's statuses map onto OpenAI's (and
`status --wait` exit codes); the price quote and metrics are read; the key never appears in an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from ftcli.service import errors
from ftcli.service.backends.together import TogetherBackend
from ftcli.service.backends.together_wire import STATUSES
from ftcli.service.client import make_client
from ftcli.service.jobs import EXIT_CODES, LOOKUPS, JobRequest, wait_for_job
from ftcli.service.settings import Settings

KEY = "tgp_v1_Xq9fault7secretKEYz2"  # the form of Together's keys
Fault = Callable[[httpx2.Request], httpx2.Response | None]


@dataclass
class FakeTogether:
    faults: list[Fault] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # what GET /fine-tunes/{id} answers, one per call
    slept: list[float] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/v1")
        self.requests.append((request.method, path))
        if self.faults:
            answer = self.faults.pop(0)(request)
            if answer is not None:
                return answer
        if request.method == "POST" and path == "/fine-tunes":
            body = json.loads(request.content)
            job = {"id": f"ft-{len(self.jobs) + 1}", "status": "pending", "created_at": "2026-12-03T10:00:00Z"}
            job.update({key: body.get(key) for key in ("model", "training_file", "suffix")})
            self.jobs[job["id"]] = job
            return httpx2.Response(200, json=job)
        if request.method == "GET" and path == "/fine-tunes":
            return httpx2.Response(200, json={"data": list(self.jobs.values())})
        if request.method == "GET" and path.startswith("/fine-tunes/") and path.count("/") == 2:
            job = dict(self.jobs[path.rsplit("/", 1)[1]])
            if self.statuses:
                job["status"] = self.statuses.pop(0)
            if job["status"] == "error":
                job["events"] = [{"type": "job_error", "level": "error", "message": "CUDA out of memory"}]
            return httpx2.Response(200, json=job)
        if path.endswith("/events"):
            return httpx2.Response(200, json={"data": []})
        if path.endswith("/metrics"):
            return httpx2.Response(200, json={"metrics": [{"train/loss": 1.5, "train/global_step": 3}]})
        if path == "/fine-tunes/models/limits":
            if request.url.params["model_name"] != "meta-llama/Llama-3.1-8B":
                return httpx2.Response(404, json={"message": "not supported"})
            return httpx2.Response(200, json=LIMITS)
        if path == "/fine-tunes/estimate-price":
            return httpx2.Response(200, json={"estimated_total_price": 4.25, "allowed_to_proceed": True,
                                              "estimated_train_token_count": 120000})  # fmt: skip
        return httpx2.Response(404, json={"error": {"message": f"no route {path}"}})

    def backend(self) -> TogetherBackend:
        http = httpx2.Client(transport=httpx2.MockTransport(self.handle))
        client = make_client(Settings(kind="together", base_url="https://api.together.test/v1", api_key=KEY),
                             max_retries=0, http_client=http)  # fmt: skip
        return TogetherBackend(client, sleep=self.slept.append, clock=lambda: 1_796_292_000.0)  # 2026-12-03T10:00Z


LIMITS = {
    "model_name": "meta-llama/Llama-3.1-8B", "max_num_epochs": 20, "max_num_evals": 10, "max_learning_rate": 1e-3,
    "min_learning_rate": 1e-6, "supports_vision": False, "supports_tools": True, "supports_reasoning": False,
    "merge_output_lora": True, "lora_training": {"max_batch_size": 64, "max_batch_size_dpo": 32, "min_batch_size": 8,
                                                 "max_rank": 64, "target_modules": ["q_proj"]},
}  # fmt: skip
REQUEST = JobRequest(model="meta-llama/Llama-3.1-8B", training_file="file-1", suffix="legal")


def test_a_create_whose_answer_was_lost_makes_one_job() -> None:
    fake = FakeTogether()

    def lose_the_answer(request: httpx2.Request) -> httpx2.Response:
        fake.handle(request)  # Together made the job ...
        fake.requests.pop()  # (one request, noted once)
        raise httpx2.ReadTimeout("timed out", request=request)  # ... and the answer never came

    fake.faults = [lose_the_answer]
    job = fake.backend().create_job(REQUEST)
    assert len(fake.jobs) == 1 and job.id == "ft-1"
    assert fake.requests.count(("POST", "/fine-tunes")) == 1  # found by model, file, suffix and time


def test_a_lost_create_whose_lookup_keeps_failing_makes_one_request_and_says_how_to_find_the_job() -> None:
    fake = FakeTogether()

    def lose_the_answer(request: httpx2.Request) -> httpx2.Response:
        faults, fake.faults = fake.faults, []
        fake.handle(request)  # Together made the job ...
        fake.requests.pop()
        fake.faults = faults
        raise httpx2.ReadTimeout("timed out", request=request)  # ... and the answer never came

    def list_down(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, json={"message": "internal error"})

    fake.faults = [lose_the_answer, *[list_down] * 10]
    with pytest.raises(errors.BackendError) as caught:
        fake.backend().create_job(REQUEST)
    assert fake.requests.count(("POST", "/fine-tunes")) == 1 and len(fake.jobs) == 1  # never sent twice
    assert fake.requests.count(("GET", "/fine-tunes")) == LOOKUPS and fake.slept == [1.0, 2.0]
    message, hint = caught.value.message, caught.value.hint or ""
    assert "not sent again" in message and "suffix legal" in message and "2026-12-03 10:00:00 UTC" in message
    assert hint.endswith("ftcli status (a job of meta-llama/Llama-3.1-8B on file-1, suffix legal created since then)")


def test_a_failed_create_that_made_nothing_is_retried_once() -> None:
    fake = FakeTogether(faults=[lambda r: httpx2.Response(503, json={"error": {"message": "busy"}})])
    job = fake.backend().create_job(REQUEST)
    assert len(fake.jobs) == 1 and fake.requests.count(("POST", "/fine-tunes")) == 2 and job.status == "queued"


def test_rate_limited_create_waits_as_told() -> None:
    fake = FakeTogether(faults=[lambda r: httpx2.Response(429, headers={"retry-after": "7"}, json={"error": {}})])
    backend = fake.backend()
    backend.create_job(REQUEST)
    assert fake.slept == [7.0] and len(fake.jobs) == 1


@pytest.mark.parametrize(("together", "openai"), sorted(STATUSES.items()))
def test_every_together_status_maps_and_is_kept(together: str, openai: str) -> None:
    fake = FakeTogether(jobs={"ft-9": {"id": "ft-9", "status": together, "model": "m", "training_file": "f"}})
    job = fake.backend().get_job("ft-9")
    assert (job.status, getattr(job, "backend_status", None)) == (openai, together)
    assert (job.error is not None) == (openai == "failed")


def test_waiting_follows_to_the_end_with_the_exit_code_and_the_error() -> None:
    fake = FakeTogether(statuses=["pending", "running", "compressing", "error"])
    fake.jobs["ft-1"] = {"id": "ft-1", "status": "pending", "model": "m", "training_file": "f"}
    updates = list(wait_for_job(fake.backend(), "ft-1", interval=0.0, sleep=lambda _: None))
    assert [u.status for u in updates] == ["queued", "running", "running", "failed"]
    assert EXIT_CODES[updates[-1].status] == 1 and "CUDA out of memory" in updates[-1].job.error.message  # type: ignore[union-attr]
    assert updates[0].step == 3 and updates[0].train_loss == 1.5  # Together's metrics, as OpenAI's metrics events


def test_the_price_quote_is_read() -> None:
    quote = FakeTogether().backend().price_estimate(REQUEST)
    assert quote is not None and (quote.total_usd, quote.trained_tokens, quote.allowed) == (4.25, 120000, True)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"n_epochs": 30}, "n_epochs 30 is above its maximum 20"),
        ({"batch_size": 4}, "batch_size 4 is below its minimum 8"),
        ({"extra_hyperparameters": {"lora_rank": 128}}, "lora_rank 128 is above its maximum 64"),
        ({"learning_rate_multiplier": 500.0}, "learning_rate 0.005 is above its maximum 0.001"),
        ({"model": "acme/unknown-7b"}, "Together does not fine-tune acme/unknown-7b"),
    ],
)
def test_a_job_past_the_models_limits_is_refused_before_it_is_created(changes: dict[str, Any], says: str) -> None:
    import dataclasses

    fake = FakeTogether()
    with pytest.raises(errors.UsageError, match=says):
        fake.backend().price_estimate(dataclasses.replace(REQUEST, **changes))
    assert ("POST", "/fine-tunes") not in fake.requests and ("POST", "/fine-tunes/estimate-price") not in fake.requests


@pytest.mark.parametrize("key", [KEY, "0123456789abcdef" * 4])  # Together's keys, new and old
def test_errors_never_show_the_key(key: str) -> None:
    fake = FakeTogether(faults=[lambda r: httpx2.Response(401, json={"error": {"message": f"bad key {key}"}})])
    with pytest.raises(errors.AuthError) as caught:
        fake.backend().list_jobs()
    assert key not in str(caught.value) and "***" in str(caught.value)
    assert "TOGETHER_API_KEY" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ('attachment; filename="legal-adapter.tar.zst"', "legal-adapter.tar.zst"),
        ('attachment; filename="../../.bashrc"', "ft-1-adapter.tar.zst"),  # reduced to ".bashrc": refused
        ("attachment; filename=/etc/passwd", "passwd"),  # only ever a plain name inside the export
        ('attachment; filename="a b+c.tar"', "ft-1-adapter.tar.zst"),
        ("", "ft-1-adapter.tar.zst"),
    ],
)
def test_a_download_is_named_only_by_a_plain_name(disposition: str, name: str) -> None:
    from ftcli.service.backends.together_wire import download_name
    from ftcli.service.job_export import SAFE_ID

    chosen = download_name(httpx2.Response(200, headers={"content-disposition": disposition}), "ft-1", "adapter")
    assert chosen == name and SAFE_ID.fullmatch(chosen)


@pytest.mark.parametrize("envelope", [False, True], ids=["bare-list", "data-envelope"])
def test_models_reads_togethers_bare_list_and_marks_the_accounts_fine_tunes(envelope: bool) -> None:
    """Together's GET /models answers a bare JSON list (the SDK's models.list() fails on it with an AttributeError);
    a model one of the account's jobs made is fine-tuned, from that job's base."""
    listed = [
        {"id": "meta-llama/Llama-3.1-8B", "object": "model", "created": 1692896905, "type": "chat",
         "organization": "Meta"},
        {"id": "acme/Llama-3.1-8B-legal-ft", "object": "model", "created": 1692896999, "type": "chat"},
        "not a model",
    ]  # fmt: skip

    def models(request: httpx2.Request) -> httpx2.Response | None:
        if request.url.path.endswith("/models"):
            return httpx2.Response(200, json={"data": listed} if envelope else listed)
        return None

    fake = FakeTogether(faults=[models, lambda request: None])
    fake.jobs["ft-1"] = {"id": "ft-1", "status": "completed", "model": "meta-llama/Llama-3.1-8B",
                         "training_file": "file-1", "model_output_name": "acme/Llama-3.1-8B-legal-ft"}  # fmt: skip
    backend = fake.backend()
    found = backend.list_models()
    assert [(m.id, m.fine_tuned, m.base_model, m.owned_by) for m in found] == [
        ("meta-llama/Llama-3.1-8B", False, "meta-llama/Llama-3.1-8B", "Meta"),
        ("acme/Llama-3.1-8B-legal-ft", True, "meta-llama/Llama-3.1-8B", None),
    ]
    assert found[0].created == 1692896905
    fake.faults = [models, lambda request: None]
    assert [m.id for m in backend.list_models(fine_tuned_only=True)] == ["acme/Llama-3.1-8B-legal-ft"]
