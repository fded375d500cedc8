"""`ftcli train -H` against a real `ftcli serve`: a key the server doesn't take (ignored before) and a value of the
wrong type (the job failed later with a traceback in the server's log) are refused by the client, naming the known
keys or the expected type, before anything is sent: no file uploaded, no job made. A good one trains and is reported
back as the job trained with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server
from tests.local.zorbia import QA, chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def _train(server: Server, tmp_path: Path, *args: str) -> object:
    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}
    data = tmp_path / "zorbia.jsonl"
    data.write_text(chat_jsonl(QA))
    command = ["--base-url", server.url, "train", "--file", str(data), "--model", "ftcli/tiny", "--yes"]
    return CliRunner().invoke(app, [*command, *args], env=env)


def test_train_refuses_what_ftcli_serve_doesnt_take_before_sending_anything(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        files, jobs = len(sdk.files.list().data), len(sdk.fine_tuning.jobs.list(limit=100).data)
        for args, says in (
            (
                ["-H", "bogus=1"],
                'unknown hyperparameter "bogus" for supervised training; it takes n_epochs, batch_size',
            ),
            (["-H", "lora_rank=abc"], "lora_rank must be 'auto' or an integer from 1 to 1024, got \"abc\""),
            (["-H", "lora_rank=1000000000000"], "lora_rank must be 'auto' or an integer from 1 to 1024"),
            (["--method", "dpo", "-H", "packing=false"], 'unknown hyperparameter "packing" for dpo training'),
        ):
            result = _train(server, tmp_path, *args)
            output = " ".join(result.output.split())  # type: ignore[attr-defined]
            assert result.exit_code == 2 and says in output, output  # type: ignore[attr-defined]
            assert "Traceback" not in output and "internal error" not in output
        assert len(sdk.files.list().data) == files and len(sdk.fine_tuning.jobs.list(limit=100).data) == jobs

        made = _train(server, tmp_path, "--epochs", "1", "-H", "lora_rank=8", "-H", "stop_at_loss=0.5", "--wait")
        assert made.exit_code == 0, made.output  # type: ignore[attr-defined]
        job = sdk.fine_tuning.jobs.list(limit=1).data[0].model_dump()
        reported = job["method"]["supervised"]["hyperparameters"]
        assert (reported["lora_rank"], reported["stop_at_loss"], reported["n_epochs"]) == (8, 0.5, 1)
        assert reported["precision"] in ("fp32", "bf16", "fp16") and reported["packing"] is True
