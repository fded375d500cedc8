"""Every verb against every backend spec the contract tests serve (issue 29, point 8): OpenAI's and Together's, each
through Steady and a profile of its kind. Each verb ends with its exit code and a message, never a traceback: what a
backend can't do is refused clearly (exit 2, naming the backend), and the key never shows. The offline verbs
(convert, check) run beside them, so that the matrix is the whole CLI, not a hand-picked list."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.conftest import qa

pytestmark = pytest.mark.contract
KEY = "sk-matrix-contract-Zq8xKpWv7"


@dataclass(frozen=True)
class Backend:
    kind: str
    url_fixture: str
    train_model: str
    chat_model: str
    job: str
    refuses: dict[str, str]  # verb -> the words of its refusal (exit 2)


BACKENDS = {
    "openai": Backend(
        "openai",
        "steady_url",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
        "ftjob-abc",
        {"export --weights": "openai does not let a fine-tuned model's weights (adapter) leave it"},
    ),
    "together": Backend(
        "together",
        "together_url",
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        "acme/Llama-3.1-8B-legal-ft",
        "ft-0123",
        {"pause": "Together can't pause", "resume": "Together can't pause or resume"},
    ),
}

# verb -> the arguments after `ftcli --profile P` ({data}, {job}, {model}, {chat_model}, {out} filled in)
VERBS: dict[str, list[str]] = {
    "convert": ["convert", "{data}", "--output", "{out}/converted.jsonl"],
    "check": ["check", "{data}"],
    "upload": ["upload", "{data}"],
    "train": ["train", "--file", "{data}", "--model", "{model}", "--yes"],
    "status": ["status"],
    "status JOB": ["status", "{job}", "--events", "--checkpoints"],
    "cancel": ["cancel", "{job}", "--yes"],
    "pause": ["pause", "{job}"],
    "resume": ["resume", "{job}"],
    "chat": ["chat", "--model", "{chat_model}", "What is the statute of limitations?"],
    "models": ["models"],
    "models --fine-tuned": ["models", "--fine-tuned"],
    "models --trainable": ["models", "--trainable"],
    "export": ["export", "--out", "{out}/export", "--job", "{job}"],
    "export --weights": ["export", "--out", "{out}/export", "--job", "{job}", "--weights", "adapter"],
    "eval": ["eval", "{eval}", "--model", "{chat_model}", "--grader", "chrf", "--no-publish"],
}


@pytest.fixture
def ftcli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`ftcli` with a profile `b` of the backend's kind pointing at Steady serving its spec."""
    backend: Backend = BACKENDS[request.param]
    url = request.getfixturevalue(backend.url_fixture)
    env = {
        "FTCLI_CONFIG_DIR": str(tmp_path / "config"),
        "FTCLI_DATA_DIR": str(tmp_path / "data"),
        "MATRIX_KEY": KEY,
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "TOGETHER_API_KEY": "",
    }
    runner = CliRunner()
    added = runner.invoke(
        app, ["profile", "add", "b", "--kind", backend.kind, "--base-url", url, "--api-key-env", "MATRIX_KEY"], env=env
    )
    assert added.exit_code == 0, added.output

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["--profile", "b", *args], env=env)

    invoke.backend = backend  # type: ignore[attr-defined]
    yield invoke


def _arguments(verb: str, backend: Backend, tmp_path: Path) -> list[str]:
    (tmp_path / "out").mkdir(exist_ok=True)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(qa(i)) + "\n" for i in range(12)))
    values = {"data": str(data), "job": backend.job, "model": backend.train_model, "chat_model": backend.chat_model,
              "out": str(tmp_path / "out"), "eval": str(data)}  # fmt: skip
    return [part.format(**values) for part in VERBS[verb]]


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("ftcli", list(BACKENDS), indirect=True)
def test_every_verb_on_every_backend(ftcli: Callable[..., Any], verb: str, output: str, tmp_path: Path) -> None:
    backend: Backend = ftcli.backend  # type: ignore[attr-defined]
    args = _arguments(verb, backend, tmp_path)
    result = ftcli(*(["--json"] if output == "json" else []), *args)
    shown = result.output
    assert "Traceback" not in shown and KEY not in shown
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    if verb in backend.refuses:
        assert result.exit_code == 2, shown
        assert backend.refuses[verb] in shown
        if output == "json":
            assert backend.refuses[verb] in json.loads(result.stderr)["error"]["message"]
        return
    assert result.exit_code == 0, shown
    if output == "json":
        json.loads(result.stdout)  # exactly one JSON document
