"""The whole loop against `ftcli serve` with the tiny base: upload → train → status --wait → chat. The fine-tuned
model answers from its training data; the base model does not. Responses parse with the SDK's own types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service import jobs
from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import ARTIFACTS, Server
from tests.local.zorbia import QA, SYSTEM, chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def cli(server: Server, tmp_path: Path, *args: str) -> object:
    env = {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
    }
    return CliRunner().invoke(app, ["--base-url", server.url, *args], env=env)


def test_train_and_chat_offline(
    server: Server,
    client,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    browser_page: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "zorbia.jsonl"
    data.write_text(chat_jsonl(QA))
    args = ["train", "--file", str(data), "--model", "ftcli/tiny", "--epochs", "50", "--batch-size", "2"]
    trained = cli(server, tmp_path, *args, "--suffix", "zorbia", "--yes", "--wait", "--json")
    assert trained.exit_code == 0, trained.output  # type: ignore[attr-defined]
    finished = json.loads(trained.stdout)  # type: ignore[attr-defined]  # one document: the finished job
    job_id = finished["id"]
    assert finished["status"] == "succeeded" and finished["fine_tuned_model"]

    job = jobs.get_job(client, job_id)
    assert isinstance(job, FineTuningJob) and job.status == "succeeded"
    assert job.fine_tuned_model == f"ft:ftcli/tiny:local:zorbia:{job_id}" and (job.trained_tokens or 0) > 0
    events = jobs.list_events(client, job_id, limit=1000)
    losses = [e.data["train_loss"] for e in events if e.type == "metrics"]  # type: ignore[index]
    assert len(losses) == 250 and sum(losses[-10:]) / 10 < losses[0] / 3, (losses[0], losses[-10:])
    assert [c.step_number for c in jobs.list_checkpoints(client, job_id)] == [250, 245, 240]
    assert all(isinstance(f, FileObject) for f in client.files.list())
    manifest = json.loads((tmp_path / ".ftcli" / "runs" / f"{job_id}.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["fine_tuned_model"] == job.fine_tuned_model
    # Estimated with the base's own tokenizer and template, as the job counts: the same number, and free.
    assert manifest["estimate"]["billed_tokens"] == job.trained_tokens and manifest["estimate"]["cost_usd"] == 0.0

    def similarity(model: str) -> float:
        """`ftcli chat --eval` on the trained questions: mean similarity (0..1) of the answers to the data's."""
        result = cli(server, tmp_path, "--json", "chat", "--model", model, "--eval", str(data))
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        return float(json.loads(result.stdout)["mean_similarity"])  # type: ignore[attr-defined]

    # Judged by similarity, not equality: greedy strings differ between CPUs and library versions.
    tuned, base = similarity(job.fine_tuned_model or ""), similarity("ftcli/tiny")
    assert tuned > 0.6 and base < 0.35 and tuned - base > 0.4, (tuned, base)

    # `ftcli eval`: the tuned model beats its base on the trained answers; a rerun asks nothing; the gate; the report
    out = tmp_path / "eval"
    models = ["--model", "ftcli/tiny", "--model", job.fine_tuned_model or ""]
    evaluate = ["--json", "eval", str(data), *models, "--grader", "chrf,rouge-l", "--max-tokens", "32"]
    first = cli(server, tmp_path, *evaluate, "--out", str(out))
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    report = json.loads(first.stdout)  # type: ignore[attr-defined]
    base_scores, tuned_scores = (m["graders"]["chrf"] for m in report["models"])
    assert tuned_scores["mean"] - base_scores["mean"] > 0.3, (base_scores, tuned_scores)
    assert tuned_scores["ci95"][0] > base_scores["ci95"][1]  # the intervals don't overlap
    assert tuned_scores["versus_first"]["wins"] >= len(QA) - 2 and report["cases"] == len(QA)
    again = json.loads(cli(server, tmp_path, *evaluate).stdout)  # type: ignore[attr-defined]
    assert [m["asked"] for m in report["models"]] == [len(QA)] * 2 and [m["asked"] for m in again["models"]] == [0, 0]
    gated = cli(server, tmp_path, *evaluate, "--min-score", f"chrf={(base_scores['mean'] + tuned_scores['mean']) / 2}")
    assert gated.exit_code == 1  # type: ignore[attr-defined]
    gated_report = json.loads(gated.stdout)  # type: ignore[attr-defined]
    assert [f.split(":")[0] for f in gated_report["failures"]] == ["ftcli/tiny"]
    ours = {report["published"], again["published"], gated_report["published"]}
    page = browser_page
    page.goto((out / "report.html").as_uri())
    rows = page.locator("#summary tbody tr")
    assert rows.count() == 2 and "ftcli/tiny" in rows.nth(0).inner_text()
    assert (
        page.locator("section.case").count() == len(QA) and "Quellan" in page.locator("section.case").first.inner_text()
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "eval-report.png"), full_page=True)
    assert (out / "cases.csv").read_text().count("\n") == 2 * len(QA) + 1
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Prefer the answer that names the right place, person or time.")
    viewed = cli(server, tmp_path, *evaluate[1:], "--judge", "ftcli/tiny", "--rubric", str(rubric), "--no-publish")
    assert viewed.exit_code == 0, viewed.output  # type: ignore[attr-defined]
    for words in ("judge", "wins/ties/losses against ftcli/tiny", "lowest chrf", "Quellan"):
        assert words in viewed.stdout, viewed.stdout  # type: ignore[attr-defined]
    # ... and each run was left on the server, whose page lists them and opens one
    assert report["published"].startswith("eval-")
    root = server.url.removesuffix("/v1")
    page.goto(f"{root}/#/evals&token={server.key}")
    page.wait_for_selector("#evals")
    # the server is shared with other tests, which publish runs of their own: the page lists exactly the server's
    # runs (the header, then one row each), ours among them
    listed = page.locator("#evals td.id").all_inner_texts()
    import httpx2

    on_server = [run["id"] for run in httpx2.get(f"{root}/ftcli/evals", headers=server.auth).json()["data"]]
    assert len(ours) == 3 and ours <= set(listed), (ours, listed)
    assert sorted(listed) == sorted(on_server) and page.locator("#evals tr").count() == 1 + len(on_server)
    page.goto(f"{root}/#/evals/{report['published']}")
    page.wait_for_selector("#eval-cases")
    assert page.locator("#eval-summary tr").count() == 3 and page.locator("#eval-cases tr").count() == 1 + 2 * len(QA)
    page.screenshot(path=str(ARTIFACTS / "eval-page.png"), full_page=True)


@pytest.fixture
def client(server: Server):  # type: ignore[no-untyped-def]
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        yield sdk


def test_validation_fails_a_bad_file_with_line_numbers(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [SYSTEM, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    bad.write_text("\n".join([good] * 5 + ['{"messages": [}'] + [good] * 5) + "\n")
    uploaded = client.files.create(file=("bad.jsonl", bad.read_bytes()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="ftcli/tiny", training_file=uploaded.id)
    final = None
    for progress in jobs.wait_for_job(OpenAIBackend(client), job.id, interval=0.2):
        final = progress
    assert final is not None and final.status == "failed"
    assert final.job.error is not None and "line 6: FT002" in (final.job.error.message or "")
