"""The Together backend against Steady serving Together's own OpenAPI spec (../shared/together-spec): every request
ftcli makes must match the spec (Steady marks each one), and every verb works on its answers, from the service layer
and from the CLI (`--profile` of kind together; the key never shown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service.backends.together import TogetherBackend
from ftcli.service.backends.together_wire import create_body, job_object, price_estimate
from ftcli.service.errors import UsageError
from ftcli.service.jobs import JobRequest
from ftcli.service.ledger import Ledger
from tests.conftest import qa
from tests.contract.conftest import TOGETHER_SPEC, Exchanges, recording

pytestmark = pytest.mark.contract
KEY = "tgp_v1_Contract5151secretKey"
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


# Together's job statuses and what OpenAI calls them (its spec's enum; written out here, not imported, so the test
# checks the mapping rather than repeating it)
OPENAI_STATUS = {
    "pending": "queued",
    "queued": "queued",
    "running": "running",
    "compressing": "running",
    "uploading": "running",
    "cancel_requested": "running",
    "cancelled": "cancelled",
    "error": "failed",
    "completed": "succeeded",
}


@pytest.fixture
def answers() -> dict[str, Any]:
    """The last answer to each "METHOD /path" (as Steady matched it): {"url": the request's, "json": its body}."""
    return {}


@pytest.fixture
def together(together_url: str, exchanges: Exchanges, answers: dict[str, Any]):  # type: ignore[no-untyped-def]
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    http = recording(exchanges)

    def keep(response: Any) -> None:
        response.read()
        if "json" in response.headers.get("content-type", ""):
            key = f"{response.request.method} {response.headers.get('x-steady-matched-path', '?')}"
            answers[key] = {"url": str(response.request.url), "json": json.loads(response.content)}

    http.event_hooks["response"].append(keep)
    settings = Settings(kind="together", base_url=together_url, api_key=KEY)
    yield TogetherBackend(make_client(settings, max_retries=0, http_client=http))
    http.close()
    exchanges.assert_all_valid()


def write_data(tmp_path: Path, count: int = 12) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(qa(i)) + "\n" for i in range(count)))
    return data


def test_upload_sends_the_form_together_expects_and_reuses_identical_bytes(
    together: TogetherBackend, exchanges: Exchanges, tmp_path: Path
) -> None:
    data, ledger = write_data(tmp_path), Ledger(tmp_path / "ledger.json")
    sent: list[int] = []
    first = together.upload(data, ledger=ledger, on_progress=sent.append)
    assert first.file.id and not first.reused and sum(sent) == data.stat().st_size
    again = together.upload(data, ledger=ledger)
    assert again.reused and again.file.id == first.file.id
    assert exchanges.paths() == ["POST /files/upload", "GET /files/{id}"]  # checked, not sent twice


@pytest.mark.parametrize(
    "request_",
    [
        JobRequest(model=MODEL, training_file="file-1", n_epochs=3, batch_size=8, suffix="legal", seed=7),
        JobRequest(
            model=MODEL,
            training_file="file-1",
            validation_file="file-2",
            learning_rate_multiplier=2.0,
            extra_hyperparameters={"lora_rank": 8, "lora_alpha": 16, "packing": False, "max_seq_length": 4096},
        ),
        JobRequest(model=MODEL, training_file="file-1", method="dpo", beta=0.2),
        JobRequest(model=MODEL, training_file="file-1", extra_hyperparameters={"training_type": "full"}),
    ],
    ids=["sft", "lora-and-validation", "dpo", "full"],
)
def test_every_kind_of_job_request_matches_the_spec(
    together: TogetherBackend, exchanges: Exchanges, answers: dict[str, Any], request_: JobRequest
) -> None:
    quote = together.price_estimate(request_)
    job = together.create_job(request_)
    assert exchanges.paths() == [
        "GET /fine-tunes/models/limits",
        "POST /fine-tunes/estimate-price",
        "POST /fine-tunes",
        "GET /fine-tunes/{id}",
    ]
    # the job is Together's answer about the job just created, mapped: its status in OpenAI's words, Together's own
    # word kept beside it, and every field from its field
    fetched = answers["GET /fine-tunes/{id}"]
    assert fetched["url"].endswith("/fine-tunes/" + answers["POST /fine-tunes"]["json"]["id"])
    created = fetched["json"]
    assert job.id == created["id"] and job.model == created.get("model", "")
    assert getattr(job, "backend_status", None) == created.get("status", "pending")
    assert job.status == OPENAI_STATUS[created.get("status", "pending")]
    assert job.training_file == created.get("training_file", "") and job.trained_tokens == created.get("token_count")
    assert job.user_provided_suffix == created.get("suffix")
    assert job.method is not None
    dpo = (created.get("training_method") or {}).get("method") == "dpo"
    assert job.method.type == ("dpo" if dpo else "supervised")
    # the quote is the estimate's answer: its price, its token count, whether Together lets the job proceed
    estimate = answers["POST /fine-tunes/estimate-price"]["json"]
    if estimate.get("estimated_total_price") is None:
        assert quote is None
    else:
        assert quote is not None and quote.total_usd == float(estimate["estimated_total_price"])
        tokens = estimate.get("estimated_train_token_count")
        assert quote.trained_tokens == (int(tokens) if tokens is not None else None)
        assert quote.allowed is (estimate.get("allowed_to_proceed") is not False)


def test_options_map_onto_togethers_fields() -> None:
    body = create_body(
        JobRequest(
            model=MODEL,
            training_file="file-1",
            validation_file="file-2",
            learning_rate_multiplier=2.0,
            seed=3,
            extra_hyperparameters={"lora_rank": 8, "lora_alpha": 16, "train_on_inputs": False},
        )
    )
    assert body["training_type"] == {"type": "Lora", "lora_r": 8, "lora_alpha": 16}
    assert body["training_method"] == {"method": "sft", "train_on_inputs": False}
    assert body["learning_rate"] == pytest.approx(2e-5) and body["random_seed"] == 3 and body["n_evals"] == 1
    dpo = create_body(JobRequest(model=MODEL, training_file="f", method="dpo", beta=0.3))
    assert dpo["training_method"] == {"method": "dpo", "dpo_beta": 0.3}
    with pytest.raises(UsageError, match="no setting bogus"):
        create_body(JobRequest(model=MODEL, training_file="f", extra_hyperparameters={"bogus": 1}))
    with pytest.raises(UsageError, match="LoRA settings"):
        create_body(
            JobRequest(model=MODEL, training_file="f", extra_hyperparameters={"training_type": "full", "lora_r": 4})
        )


def test_status_events_checkpoints_metrics_and_cancel(together: TogetherBackend, exchanges: Exchanges) -> None:
    listed = together.list_jobs()
    assert listed and all(job.id for job in listed)
    job = together.get_job("ft-01234567890123456789")
    events = together.list_events(job.id)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all("step" in e.data for e in metrics)  # type: ignore[operator]
    together.list_checkpoints(job.id)
    cancelled = together.cancel_job(job.id)
    assert cancelled.id
    assert "POST /fine-tunes/{id}/cancel" in exchanges.paths()
    assert together.trainable_models()


def test_pause_and_resume_say_together_has_no_such_operation(together: TogetherBackend, exchanges: Exchanges) -> None:
    for operation in (together.pause_job, together.resume_job):
        with pytest.raises(UsageError, match="Together can't"):
            operation("ft-1")
    together.list_jobs()  # (the fixture asserts at least one valid request)


def test_the_cli_drives_together_through_a_profile(together_url: str, tmp_path: Path) -> None:
    env = {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "MY_TOGETHER_KEY": KEY,
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
    }
    runner = CliRunner()

    def ftcli(*args: str) -> Any:
        result = runner.invoke(app, list(args), env=env)
        assert KEY not in result.output
        return result

    profile = ("--kind", "together", "--base-url", together_url, "--api-key-env", "MY_TOGETHER_KEY")
    added = ftcli("profile", "add", "tg", *profile)
    assert added.exit_code == 0, added.output
    listed = ftcli("--profile", "tg", "--json", "status")
    assert listed.exit_code == 0, listed.output
    assert isinstance(json.loads(listed.stdout), list)
    shown = ftcli("--profile", "tg", "--json", "status", "ft-0123", "--events", "--checkpoints")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert {"id", "status", "backend_status", "events", "checkpoints"} <= set(document)
    data = write_data(tmp_path)
    trained = ftcli("--json", "train", "--backend", "tg", "--file", str(data), "--model", MODEL, "--yes")
    assert trained.exit_code == 0, trained.output
    assert "12 examples, 1 epoch," in trained.stderr and json.loads(trained.stdout)["id"]  # Together's default
    paused = ftcli("--profile", "tg", "pause", "ft-0123")
    assert paused.exit_code == 2 and "Together can't pause" in paused.output
    cancelled = ftcli("--profile", "tg", "cancel", "ft-0123", "--yes")
    assert cancelled.exit_code == 0, cancelled.output
    bases = ftcli("--profile", "tg", "--json", "models", "--trainable")
    assert (
        bases.exit_code == 0 and json.loads(bases.stdout) and all(isinstance(m, str) for m in json.loads(bases.stdout))
    )
    exported = ftcli("--profile", "tg", "--json", "export", "--out", str(tmp_path / "out"), "--job", "ft-0123")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["jobs"] == 1, exported.output
    assert len(list((tmp_path / "out").glob("*/job.json"))) == 1  # named by the id Together answered with
    answered = ftcli("--profile", "tg", "--json", "chat", "--model", "acme/Llama-3.1-8B-legal-ft", "民法典第一条？")
    assert answered.exit_code == 0, answered.output  # Together's OpenAI-compatible chat, with the same client


def test_an_openai_export_retrains_on_together(together_url: str, tmp_path: Path) -> None:
    """`train --from-export` from an OpenAI-format export (as `ftcli export` writes it) onto Together: its data,
    method and hyperparameters, in a request that matches Together's spec."""
    import hashlib

    data = write_data(tmp_path)
    folder = tmp_path / "export" / "ftjob-old"
    (folder / "files").mkdir(parents=True)
    copy = folder / "files" / "file-old-train.jsonl"
    copy.write_bytes(data.read_bytes())
    hyper = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0}
    job = {"id": "ftjob-old", "model": "gpt-4.1-mini-2025-04-14", "seed": 11, "user_provided_suffix": "old",
           "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}}}  # fmt: skip
    (folder / "job.json").write_text(json.dumps(job))
    artifact = {"bytes": copy.stat().st_size, "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
                "source": "file file-old (training_file)"}  # fmt: skip
    manifest = {"format": 1, "backend": {"kind": "openai"}, "jobs": {"ftjob-old": {"artifacts": {
        "ftjob-old/files/file-old-train.jsonl": artifact}}}}  # fmt: skip
    (tmp_path / "export" / "manifest.json").write_text(json.dumps(manifest))
    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data"),
           "TOGETHER_API_KEY": KEY, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}  # fmt: skip
    runner = CliRunner()
    added = runner.invoke(app, ["profile", "add", "tg", "--kind", "together", "--base-url", together_url], env=env)
    assert added.exit_code == 0, added.output
    args = ["--json", "train", "--backend", "tg", "--from-export", str(folder), "--model", MODEL, "--yes"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output  # Steady refuses (400) a request outside Together's spec
    assert KEY not in result.output and "3 epochs" in result.stderr
    body = create_body(JobRequest(model=MODEL, training_file="file-x", n_epochs=3, batch_size=4,
                                  learning_rate_multiplier=2.0, seed=11, suffix="old"))  # fmt: skip
    assert body["learning_rate"] == pytest.approx(2e-5) and body["n_epochs"] == 3 and body["random_seed"] == 11


def test_every_status_in_togethers_spec_has_its_openai_word() -> None:
    import yaml

    spec = yaml.safe_load(TOGETHER_SPEC.read_text(encoding="utf-8"))
    assert set(spec["components"]["schemas"]["FinetuneJobStatus"]["enum"]) == set(OPENAI_STATUS)


@pytest.mark.parametrize("status", list(OPENAI_STATUS))
def test_a_together_job_maps_onto_openais_fields(status: str) -> None:
    raw = {
        "id": "ft-5151",
        "status": status,
        "model": MODEL,
        "training_file": "file-1",
        "validation_file": "file-2",
        "suffix": "legal",
        "token_count": 123_456,
        "n_epochs": 3,
        "batch_size": 8,
        "learning_rate": 2e-5,
        "random_seed": 7,
        "training_method": {"method": "dpo"},
        "model_output_name": "me/llama-legal",
        "created_at": "2026-12-03T10:00:00Z",
        "updated_at": "2026-12-03T11:00:00Z",
    }
    job = job_object(raw)
    assert job.status == OPENAI_STATUS[status] and getattr(job, "backend_status", None) == status
    assert (job.id, job.model, job.training_file, job.validation_file) == ("ft-5151", MODEL, "file-1", "file-2")
    assert (job.user_provided_suffix, job.trained_tokens, job.seed) == ("legal", 123_456, 7)
    assert job.method is not None and job.method.type == "dpo"
    assert job.hyperparameters.n_epochs == 3 and job.hyperparameters.batch_size == 8
    assert job.hyperparameters.learning_rate_multiplier == pytest.approx(2.0)  # Together's default rate is 1e-5
    over = OPENAI_STATUS[status] in ("succeeded", "failed", "cancelled")
    assert job.fine_tuned_model == ("me/llama-legal" if status == "completed" else None)
    assert (job.finished_at is not None) == over
    assert (job.error is not None) == (status == "error")


def test_a_price_estimate_maps_onto_the_quote() -> None:
    answer = {
        "estimated_total_price": 12.5,
        "allowed_to_proceed": False,
        "user_limit": 10.0,
        "estimated_train_token_count": 1_234_567,
        "estimated_eval_token_count": 0,
    }
    quote = price_estimate(answer)
    assert quote is not None
    assert (quote.total_usd, quote.trained_tokens, quote.allowed) == (12.5, 1_234_567, False)
    assert quote.details == answer
    assert price_estimate({**answer, "allowed_to_proceed": True}).allowed is True  # type: ignore[union-attr]
    assert price_estimate({}) is None and price_estimate({"allowed_to_proceed": True}) is None  # no price, no quote
