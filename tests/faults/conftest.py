"""Fixtures of the fault tests: the CLI run against FakeAPI, with the job requests it sends recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from tests.faults.fakeapi import FakeAPI


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakeAPI, list[dict[str, Any]]]:
    """FakeAPI as every command's backend, and the bodies of the jobs created on it (in order)."""
    fake, created = FakeAPI(), []

    def record_job(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/fine_tuning/jobs"):
            created.append(json.loads(request.content))

    fake.faults.append(record_job)
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.chdir(tmp_path)  # run manifests go to ./.ftcli/runs
    return fake, created


def run_cli(*args: str) -> Any:
    """`ftcli ARGS` in-process with an OpenAI key and config and data folders of its own (in the current folder)."""
    env = {"OPENAI_API_KEY": "sk-test-0123456789", "FTCLI_CONFIG_DIR": "config", "FTCLI_DATA_DIR": "data"}
    return CliRunner().invoke(app, list(args), env=env)
