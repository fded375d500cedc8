"""`ftcli chat --tools`: tools offered in the request; tool calls (whole, or streamed in fragments as OpenAI sends
them) assembled, printed and in --json output; a bad tools file is a usage error naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from ftcli.service import chat
from tests.faults.fakeapi import FakeAPI

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL_ID = "call_abc"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


STREAM = "".join(
    [
        _chunk({"role": "assistant", "content": "Checking. "}),
        _chunk({"tool_calls": [{"index": 0, "id": CALL_ID, "type": "function", "function": {"name": "get_weather"}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({}, "tool_calls"),
        "data: [DONE]\n\n",
    ]
)
WHOLE = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
        }
    ],
}
EXPECTED = [{"id": CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def _answering(api: FakeAPI) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        api.chat_requests.append(body)
        if body.get("stream"):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=STREAM.encode())
        return httpx2.Response(200, json=WHOLE)

    api.faults.append(answer)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    _answering(fake)
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tools.json").write_text(json.dumps({"tools": TOOLS}))
    return fake


@pytest.mark.parametrize("streamed", [True, False])
def test_the_service_assembles_tool_calls(api: FakeAPI, streamed: bool) -> None:
    params = chat.ChatParams(model="m", extra={"tools": TOOLS})
    calls: list[dict[str, Any]] = []
    messages = [{"role": "user", "content": "weather?"}]
    with api.client() as client:
        if streamed:
            text = "".join(chat.stream(client, params, messages, calls))
        else:
            text = chat.complete(client, params, messages, calls)
    assert text == ("Checking. " if streamed else "")
    assert calls == EXPECTED
    assert api.chat_requests[-1]["tools"] == TOOLS


@pytest.mark.parametrize("flags", [[], ["--no-stream"]], ids=["streamed", "whole"])
def test_chat_prints_tool_calls(api: FakeAPI, flags: list[str]) -> None:
    result = CliRunner().invoke(app, ["chat", "-m", "m", "--tools", "tools.json", *flags, "weather in Paris?"])
    assert result.exit_code == 0, result.output
    assert f'→ tool call get_weather({{"city": "Paris"}})  [{CALL_ID}]' in result.stdout
    assert api.chat_requests[-1]["tools"] == TOOLS


def test_chat_json_has_the_tool_calls(api: FakeAPI) -> None:
    result = CliRunner().invoke(app, ["--json", "chat", "-m", "m", "--tools", "tools.json", "weather in Paris?"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "model": "m",
        "answer": "",
        "tool_calls": EXPECTED,
        "finish_reason": "tool_calls",
        "usage": None,
        "reasoning": None,
    }


@pytest.mark.parametrize(
    ("content", "words"),
    [("[", "not JSON"), ("[]", "non-empty list"), ('[{"type": "function"}]', "tools[0] needs a function")],
)
def test_a_bad_tools_file_is_a_usage_error(api: FakeAPI, tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    result = CliRunner().invoke(app, ["chat", "-m", "m", "--tools", "bad.json", "hi"])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
    assert api.chat_requests == []
