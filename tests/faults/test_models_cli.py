"""`ftcli models`: shutdown dates from the API where it gives them, else from the catalog; days left; and the
warnings `chat` and `status` give for a model that is going away."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from ftcli.render.models import days_left_text
from ftcli.service.models import ModelView
from tests.faults.fakeapi import FakeAPI, job_object

TUNED = "ft:gpt-4o-mini-2024-07-18:acme:legal:abc123"
TODAY = "2026-12-01"  # the injected clock (FTCLI_TODAY): 44 days before gpt-4o-mini fine-tunes stop serving


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    fake.models = [
        {"id": TUNED, "object": "model", "created": 1, "owned_by": "acme"},
        {"id": "ft:my-base:local::x", "object": "model", "created": 2, "owned_by": "local"},
        {"id": "gpt-4.1-mini-2025-04-14", "object": "model", "created": 3, "owned_by": "system"},
        {"id": "vendor-model", "object": "model", "created": 4, "owned_by": "v", "shutdown_date": "2030-02-01"},
    ]
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCLI_TODAY", TODAY)
    return fake


def test_models_json_has_dates_sources_and_days_left(api: FakeAPI) -> None:
    result = CliRunner().invoke(app, ["--json", "models"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows[TUNED]["base_model"] == "gpt-4o-mini-2024-07-18" and rows[TUNED]["fine_tuned"]
    assert rows[TUNED]["shutdown_date"] == "2027-01-14" and rows[TUNED]["shutdown_source"] == "catalog"
    assert rows[TUNED]["days_left"] == 44
    assert rows["vendor-model"]["shutdown_date"] == "2030-02-01" and rows["vendor-model"]["shutdown_source"] == "api"
    assert rows["ft:my-base:local::x"]["shutdown_date"] is None and rows["ft:my-base:local::x"]["days_left"] is None


def test_models_fine_tuned_only_and_the_table(api: FakeAPI) -> None:
    result = CliRunner().invoke(app, ["models", "--fine-tuned"])
    assert result.exit_code == 0, result.output
    table = result.stdout  # (long ids fold across lines at the test console's width)
    assert "ft:gpt-4o-mini" in table and "ft:my-base" in table and "gpt-4.1-mini" not in table
    assert "2027-01-14" in table and "44 days" in table


def test_days_left_are_highlighted_by_urgency() -> None:
    assert days_left_text(10).style == "bold red" and days_left_text(60).style == "yellow"
    assert days_left_text(400).style == "green" and str(days_left_text(0)) == "shut down"
    view = ModelView("m", None, None, "m", False, dt.date(2027, 1, 14), "catalog")
    assert view.days_left(dt.date(2027, 1, 4)) == 10


def test_chat_and_status_warn_about_a_model_that_stops_serving(api: FakeAPI) -> None:
    chat = CliRunner().invoke(app, ["chat", "--model", TUNED, "--no-stream", "hi"])
    assert chat.exit_code == 0, chat.output
    assert f"warning: {TUNED} stops serving in 44 days" in chat.stderr and "ftcli export" in chat.stderr
    api.jobs["ftjob-1"] = job_object("ftjob-1", status="succeeded", fine_tuned_model=TUNED)
    status = CliRunner().invoke(app, ["status", "ftjob-1"])
    assert status.exit_code == 0, status.output
    assert "(2027-01-14)" in status.stderr


def test_after_the_shutdown_the_warning_and_the_table_say_so(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCLI_TODAY", "2027-01-15")
    chat = CliRunner().invoke(app, ["chat", "--model", TUNED, "--no-stream", "hi"])
    assert chat.exit_code == 0, chat.output
    assert f"warning: {TUNED} was shut down (2027-01-14)" in chat.stderr
    rows = {row["id"]: row for row in json.loads(CliRunner().invoke(app, ["--json", "models"]).stdout)}
    assert rows[TUNED]["days_left"] == -1
    assert "shut down" in CliRunner().invoke(app, ["models", "--fine-tuned"]).stdout


def test_a_malformed_injected_date_is_a_usage_error(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCLI_TODAY", "next tuesday")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 2 and "FTCLI_TODAY='next tuesday' is not a date" in result.stderr
