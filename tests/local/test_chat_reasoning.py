"""`ftcli serve` answers a thinking model's reasoning apart from its answer (issue 23, point 2): `message.
reasoning_content`, `delta.reasoning_content` when streaming, valid per OpenAI's spec (which admits the extra field)
and kept by the SDK; `ftcli chat` shows it apart (dim, on stderr, before the answer; `reasoning` in --json).

The server, its model cache and the thinking base (random weights, a Qwen3-style template: tests/local/thinking.py)
are real; only the generator is scripted, since a random model's words are noise. The parser itself is tested on
text in tests/unit/test_reasoning_split.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

import httpx2  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ftcli.cli import context, output  # noqa: E402
from ftcli.cli.app import app as cli_app  # noqa: E402
from ftcli.data.chat_template import render_prompt  # noqa: E402
from ftcli.data.local_bases import CHATML  # noqa: E402
from ftcli.server import inference  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from tests.local.thinking import OPENING_TEMPLATE, thinking_base  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

SCRIPT = ["<thi", "nk>\nThe notes say ", "Quellan.\n</th", "ink>\n\n", "Quellan", "."]
REASONING, ANSWER = "The notes say Quellan.", "Quellan."
ASK = [{"role": "user", "content": "What is the capital of Zorbia?"}]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Path]]:
    """The server with three random-weight bases under its model root: a thinking one, one whose prompt opens the
    think block, and a ChatML one; what any of them generates is SCRIPT (minus its opening tag where the prompt
    opened the block)."""
    models = tmp_path / "models"
    thinking_base(models / "thinker")
    thinking_base(models / "opener", template=OPENING_TEMPLATE)
    thinking_base(models / "plain", template=CHATML)
    monkeypatch.setenv("FTCLI_MODEL_ROOTS", str(models))

    def scripted(loaded: Any, messages: Any, *_args: Any, **_kwargs: Any) -> Iterator[str]:
        opened = render_prompt(loaded.tokenizer, messages).endswith("<think>\n")
        yield from ["The notes say ", "Quellan.\n</th", "ink>\n\n", "Quellan", "."] if opened else SCRIPT

    monkeypatch.setattr(inference, "generate_stream", scripted)
    with TestClient(create_app(tmp_path / "data"), base_url="http://127.0.0.1:8765") as client:
        yield client, models


def post(client: TestClient, model: Path, **body: Any) -> tuple[Any, list[str]]:
    response = client.post("/v1/chat/completions", json={"model": str(model), "messages": ASK, **body})
    content_type = response.headers["content-type"].split(";")[0]
    exchange = Exchange("POST", "/v1/chat/completions", response.status_code, content_type, response.content)
    return response, violations(exchange)


def chunks_of(response: Any) -> list[ChatCompletionChunk]:
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: {")]
    return [ChatCompletionChunk.model_validate_json(event) for event in events]


@pytest.mark.parametrize("base", ["thinker", "opener"])
def test_the_reasoning_comes_back_apart_from_the_answer(served: tuple[TestClient, Path], base: str) -> None:
    client, models = served
    response, problems = post(client, models / base)
    assert response.status_code == 200 and problems == []
    message = ChatCompletion.model_validate(response.json()).choices[0].message
    assert message.content == ANSWER
    assert message.reasoning_content == REASONING  # type: ignore[attr-defined]  # the SDK keeps the extra field
    completion_tokens = response.json()["usage"]["completion_tokens"]
    assert completion_tokens == len("".join(SCRIPT).encode()) - (len("<think>\n") if base == "opener" else 0)


@pytest.mark.parametrize("base", ["thinker", "opener"])
def test_a_stream_sends_the_reasoning_as_reasoning_deltas_first(served: tuple[TestClient, Path], base: str) -> None:
    client, models = served
    response, problems = post(client, models / base, stream=True)
    assert problems == []
    deltas = [c.choices[0].delta for c in chunks_of(response) if c.choices]
    thoughts = [getattr(d, "reasoning_content", None) for d in deltas]
    assert "".join(t for t in thoughts if t) == REASONING
    assert "".join(d.content or "" for d in deltas) == ANSWER  # no tag, no think text in the answer
    last_thought = max(i for i, t in enumerate(thoughts) if t)
    assert all(not d.content for d in deltas[: last_thought + 1])  # the reasoning came before the answer
    assert [c.choices[0].finish_reason for c in chunks_of(response) if c.choices][-1] == "stop"


def test_a_model_without_a_thinking_template_answers_its_text_as_it_is(served: tuple[TestClient, Path]) -> None:
    client, models = served
    response, problems = post(client, models / "plain")
    assert problems == []
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "".join(SCRIPT) and "reasoning_content" not in message


def test_an_image_in_a_message_is_refused_not_answered_as_text(served: tuple[TestClient, Path]) -> None:
    client, models = served
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "What is this?"}, image]
    response = client.post(
        "/v1/chat/completions",
        json={"model": str(models / "thinker"), "messages": [{"role": "user", "content": content}]},
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "messages[0].content[1]"
    assert "read text only" in error["message"] and "no vision models yet" in error["message"]


@pytest.fixture
def cli(served: tuple[TestClient, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`ftcli` commands talk to the served app (its requests forwarded in-process)."""
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    client, models = served

    def forward(request: httpx2.Request) -> httpx2.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization")}
        answered = client.request(request.method, request.url.path, content=request.content, headers=headers)
        kept = {k: v for k, v in answered.headers.items() if k.lower() == "content-type"}
        return httpx2.Response(answered.status_code, headers=kept, content=answered.content)

    http = httpx2.Client(transport=httpx2.MockTransport(forward))
    settings = Settings(kind="compatible", base_url="http://serve.test/v1", api_key="sk-local-0123456789")
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: make_client(settings, http_client=http))
    monkeypatch.setenv("FTCLI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FTCLI_DATA_DIR", str(tmp_path / "cli-data"))
    for console in (output.stdout, output.stderr):
        console.cache_clear()
    return models


@pytest.mark.parametrize("flags", [[], ["--no-stream"]], ids=["streamed", "whole"])
def test_ftcli_chat_shows_the_reasoning_apart_before_the_answer(cli: Path, flags: list[str]) -> None:
    result = CliRunner().invoke(cli_app, ["chat", "-m", str(cli / "thinker"), *flags, "Capital of Zorbia?"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ANSWER}\n"  # the answer alone where a pipe reads it
    assert REASONING in result.stderr and "<think>" not in result.stderr + result.stdout


def test_ftcli_chat_json_has_the_reasoning(cli: Path) -> None:
    thinking = CliRunner().invoke(cli_app, ["--json", "chat", "-m", str(cli / "thinker"), "Capital of Zorbia?"])
    assert thinking.exit_code == 0, thinking.output
    document = json.loads(thinking.stdout)
    assert (document["answer"], document["reasoning"]) == (ANSWER, REASONING)
    plain = json.loads(CliRunner().invoke(cli_app, ["--json", "chat", "-m", str(cli / "plain"), "hi"]).stdout)
    assert plain["reasoning"] is None and plain["answer"] == "".join(SCRIPT)
