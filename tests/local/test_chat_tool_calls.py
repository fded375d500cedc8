"""Tools offered to the local chat endpoint: rendered into the prompt as in training, and a model's Hermes-style
`<tool_call>` text returned as OpenAI's structured `tool_calls` (whole and streamed), valid per OpenAI's spec.

The model is replaced by a scripted generator: what is tested is the endpoint's handling of what a tool-trained
model writes, not the tiny model's (random) words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

from ftcli.server import inference  # noqa: E402
from ftcli.server.api import chat  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

pytestmark = [pytest.mark.local]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
SCRIPT = [
    "Let me ",
    "check. ",
    "<tool",
    '_call>\n{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}\n</tool_call>',
]
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, list[Any]]]:
    seen_tools: list[Any] = []

    def generate(_loaded: Any, _messages: Any, _sampling: Any, tools: Any = None, stop: Any = None) -> Iterator[str]:
        seen_tools.append(tools)
        yield from SCRIPT

    monkeypatch.setattr(inference, "generate_stream", generate)
    monkeypatch.setattr(
        inference, "count_tokens", lambda _l, messages, tools=None: 10 * len(messages) + (50 if tools else 0)
    )
    monkeypatch.setattr(inference, "count_text_tokens", lambda _l, text: len(text.split()))
    monkeypatch.setattr(chat, "_resolve", lambda _store, _model: (Path("base"), None))
    app = create_app(tmp_path / "data")
    loaded = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=2048)), context_length=2048, thinking=False
    )
    app.state.models = SimpleNamespace(get=lambda _base, _adapter: loaded, close=lambda: None)
    with TestClient(app, base_url="http://127.0.0.1:8765") as test_client:
        yield test_client, seen_tools


def _post(client: TestClient, body: dict[str, Any]) -> tuple[Any, list[str]]:
    response = client.post("/v1/chat/completions", json={"model": "ftcli/tiny", "messages": MESSAGES, **body})
    content_type = response.headers["content-type"].split(";")[0]
    exchange = Exchange("POST", "/v1/chat/completions", response.status_code, content_type, response.content)
    return response, violations(exchange)


def test_a_tool_call_comes_back_structured(client: tuple[TestClient, list[Any]]) -> None:
    test_client, seen_tools = client
    response, problems = _post(test_client, {"tools": TOOLS})
    assert problems == []
    completion = ChatCompletion.model_validate(response.json())
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert seen_tools == [TOOLS]  # the prompt was rendered with the tools, as in training
    assert completion.usage is not None and completion.usage.prompt_tokens == 60


def test_a_streamed_tool_call_is_held_back_then_sent_as_a_tool_call_delta(client: tuple[TestClient, list[Any]]) -> None:
    test_client, _ = client
    response, problems = _post(test_client, {"tools": TOOLS, "stream": True, "stream_options": {"include_usage": True}})
    assert problems == []
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: {")]
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Let me check. "  # no `<tool` ever shown as text
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert [(c.index, c.function and c.function.name) for c in calls] == [(0, "get_weather")]
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 60
    assert response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("body", [{}, {"tools": TOOLS, "tool_choice": "none"}], ids=["no tools", "tool_choice none"])
def test_without_tools_on_offer_the_text_is_the_answer(
    client: tuple[TestClient, list[Any]], body: dict[str, Any], stream: bool
) -> None:
    response, problems = _post(client[0], {**body, "stream": stream})
    assert problems == []
    if stream:
        events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: {")]
        chunks = [ChatCompletionChunk.model_validate_json(event) for event in events]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    else:
        message = ChatCompletion.model_validate(response.json()).choices[0].message
        assert message.tool_calls is None
        text = message.content or ""
    assert text == "".join(SCRIPT)


def test_split_tool_calls_keeps_what_is_not_a_call() -> None:
    from ftcli.server.tool_calls import safe_prefix_length, split_tool_calls

    two = '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call> and <tool_call>{"name": "b"}</tool_call>'
    text, calls = split_tool_calls(two)
    assert text == "and" and [c["function"]["name"] for c in calls] == ["a", "b"]
    assert [c["function"]["arguments"] for c in calls] == ['{"x": 1}', "{}"]  # string arguments kept as given
    assert len({c["id"] for c in calls}) == 2
    for not_a_call in ("<tool_call>{oops}</tool_call>", '<tool_call>{"arguments": {}}</tool_call>', "<tool_call>"):
        assert split_tool_calls(not_a_call) == (not_a_call, [])
    assert [safe_prefix_length(t) for t in ("abc", "abc<", "abc<tool_ca", "a<tool_call>x", "a <b>")] == [3, 3, 3, 1, 5]
