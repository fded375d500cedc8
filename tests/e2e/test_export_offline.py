"""The commands `ftcli models export` prints for an adapter work offline (issue 29): with a base the server holds on
this machine (here ftcli/tiny, which no hub has), they load it from its folder with HF_HUB_OFFLINE=1; the printed
transformers command is run as printed, with an empty Hugging Face cache."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from openai.types.fine_tuning import FineTuningJob
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def test_the_printed_adapter_commands_load_the_local_base_offline(
    server: Server, finished_job: FineTuningJob, tmp_path: Path
) -> None:
    from ftcli.server.bases import resolve_base

    model = finished_job.fine_tuned_model
    assert model is not None
    out = tmp_path / "my adapter"  # a space: the commands quote it
    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(
        app, ["--json", "--base-url", server.url, "models", "export", model, "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    commands = json.loads(result.stdout)["serve"]
    base_folder = resolve_base("ftcli/tiny", tmp_path / "bases")  # the folder the server loads (FTCLI_BASES_DIR)
    vllm = next(c for c in commands if " vllm serve " in f" {c}")
    assert vllm.startswith("HF_HUB_OFFLINE=1 ") and shlex.split(vllm)[3] == str(base_folder)
    assert f"={out.resolve()}" in shlex.split(vllm)[-1]
    python = next(c for c in commands if "python -c" in c)
    assert python.startswith("HF_HUB_OFFLINE=1 ") and "ftcli/tiny" not in python

    empty_cache = tmp_path / "hf-home"
    run = subprocess.run(
        ["bash", "-c", python],
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HF_HOME": str(empty_cache),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
