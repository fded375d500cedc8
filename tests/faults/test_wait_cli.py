"""`status --wait`: a live view that rides through faults and exits with the job's final state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from ftcli.service import jobs
from ftcli.service.manifest import RunManifest
from tests.faults.fakeapi import FakeAPI, error, job_object


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.setattr(jobs.time, "sleep", lambda _seconds: None)
    monkeypatch.chdir(tmp_path)
    return fake


@pytest.mark.parametrize(("final", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 3)])
def test_exit_code_is_the_final_state(api: FakeAPI, final: str, code: int) -> None:
    api.jobs["ftjob-1"] = job_object("ftjob-1", status="queued")
    api.statuses = iter(["running", "running", final])
    flaky = {"n": 0}

    def fail_sometimes(request):  # type: ignore[no-untyped-def]
        flaky["n"] += 1
        return error(502, "bad gateway") if flaky["n"] == 2 else None

    api.faults.append(fail_sometimes)
    result = CliRunner().invoke(app, ["status", "ftjob-1", "--wait"])
    assert result.exit_code == code, result.output
    assert final in result.stdout


def test_wait_fills_the_run_manifest(api: FakeAPI, tmp_path: Path) -> None:
    api.jobs["ftjob-2"] = job_object(
        "ftjob-2", status="running", trained_tokens=1234, fine_tuned_model="ft:gpt-4o-mini:org:legal:ftjob-2"
    )
    api.statuses = iter(["succeeded"])
    RunManifest(
        job_id="ftjob-2",
        backend={"kind": "compatible"},
        model="gpt-4o-mini",
        method="sft",
        training_file={"file_id": "file-1"},
        parameters={},
    ).save()
    result = CliRunner().invoke(app, ["--json", "status", "ftjob-2", "--wait"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "succeeded"
    manifest = RunManifest.load("ftjob-2")
    assert manifest is not None
    assert (manifest.status, manifest.trained_tokens, manifest.fine_tuned_model) == (
        "succeeded",
        1234,
        "ft:gpt-4o-mini:org:legal:ftjob-2",
    )


def test_failed_job_error_in_plain_words(api: FakeAPI) -> None:
    api.jobs["ftjob-3"] = job_object(
        "ftjob-3",
        status="failed",
        error={"code": "invalid_training_file", "message": "line 6: invalid JSON", "param": "training_file"},
    )
    result = CliRunner().invoke(app, ["status", "ftjob-3"])
    assert result.exit_code == 0, result.output
    assert "line 6: invalid JSON" in result.stdout and "ftcli check FILE" in result.stdout


def test_ctrl_c_detaches_without_cancelling(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    api.jobs["ftjob-4"] = job_object("ftjob-4", status="running")

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.time, "sleep", interrupt)
    result = CliRunner().invoke(app, ["status", "ftjob-4", "--wait"])
    assert result.exit_code == 130
    assert "ftcli status ftjob-4 --wait" in result.stderr
    assert not [r for r in api.requests if r[1].endswith("/cancel")]


def test_wait_without_a_terminal_prints_a_line_only_when_something_changed(api: FakeAPI) -> None:
    api.jobs["ftjob-5"] = job_object("ftjob-5", status="running")
    api.events["ftjob-5"] = [
        {
            "id": "ftevent-1",
            "object": "fine_tuning.job.event",
            "created_at": 1,
            "level": "info",
            "message": "Step 1/10: training loss=2.5000",
            "type": "metrics",
            "data": {"step": 1, "train_loss": 2.5, "total_steps": 10},
        }
    ]
    api.statuses = iter(["running"] * 6 + ["succeeded"])
    result = CliRunner().invoke(app, ["status", "ftjob-5", "--wait"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("running · step 1 · loss 2.5000") == 1, result.stderr  # six polls, one line


def test_the_confirmation_is_asked_on_stderr_so_stdout_stays_one_document(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftcli.cli import output

    api.jobs["ftjob-6"] = job_object("ftjob-6", status="running")
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)  # a person at a terminal
    declined = CliRunner().invoke(app, ["cancel", "ftjob-6", "--json"], input="n\n")
    assert declined.exit_code == 1 and "Cancel ftjob-6?" in declined.stderr
    assert "Cancel" not in declined.stdout  # (the test runner echoes the typed answer there, as a terminal would)
    assert not [r for r in api.requests if r[1].endswith("/cancel")]
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: False)  # a script: refused without --yes
    refused = CliRunner().invoke(app, ["cancel", "ftjob-6", "--json"])
    assert refused.exit_code == 2 and json.loads(refused.stderr)["error"]["hint"].startswith("pass --yes")
