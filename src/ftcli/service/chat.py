"""Chat with a model: one answer, streamed or not; a dropped stream keeps what arrived."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftcli.service.errors import BackendError, StreamInterrupted, translate, translated

if TYPE_CHECKING:
    from openai import OpenAI

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChatParams:
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def request(self, messages: list[Message]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, **self.extra}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_completion_tokens"] = self.max_tokens
        return body


ToolCall = dict[str, Any]  # {"id", "type": "function", "function": {"name", "arguments"}}, as the API sends it


@dataclass(frozen=True, slots=True)
class Answer:
    """One whole answer: what `chat --json` prints."""

    model: str  # as the backend names it (a dated snapshot, a fine-tune's full id)
    answer: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: dict[str, Any] | None  # prompt_tokens, completion_tokens, total_tokens, as the backend counted them
    reasoning: str | None = None  # a thinking model's reasoning, apart from its answer (None: the backend sent none)


def reply(client: OpenAI, params: ChatParams, messages: list[Message]) -> Answer:
    """The model's whole answer, with its tool calls, finish reason and token usage."""
    with translated():
        response = client.chat.completions.create(**params.request(messages))
    usage = response.usage.model_dump(mode="json", exclude_none=True) if response.usage else None
    choice = response.choices[0] if response.choices else None
    message = getattr(choice, "message", None)  # a backend may answer a choice without one: an empty answer
    if choice is None or message is None:
        return Answer(response.model or params.model, "", [], getattr(choice, "finish_reason", None), usage)
    calls = [call.model_dump(include={"id", "type", "function"}) for call in message.tool_calls or []]
    return Answer(
        response.model or params.model, message.content or "", calls, choice.finish_reason, usage, reasoning_of(message)
    )


def reasoning_of(message: Any) -> str | None:
    """The reasoning a message or stream delta carries apart from its answer: `reasoning_content` (vLLM, DeepSeek,
    ftcli serve) or `reasoning` (OpenRouter); the SDK keeps such fields, which OpenAI's schema doesn't list."""
    for key in ("reasoning_content", "reasoning"):
        value = getattr(message, key, None)
        if isinstance(value, str) and value:
            return value
    return None


def complete(client: OpenAI, params: ChatParams, messages: list[Message], calls: list[ToolCall] | None = None) -> str:
    """The answer's text; the tool calls it makes (when `tools` were offered) are appended to `calls`."""
    answer = reply(client, params, messages)
    if calls is not None:
        calls.extend(answer.tool_calls)
    return answer.answer


def stream(
    client: OpenAI,
    params: ChatParams,
    messages: list[Message],
    calls: list[ToolCall] | None = None,
    on_reasoning: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Yield text deltas; tool calls, which arrive in pieces, are assembled and appended to `calls` at the end;
    reasoning deltas (a thinking model's, before its answer) go to `on_reasoning`.
    If the connection drops mid-answer, raise StreamInterrupted with the partial text."""
    import httpx2
    import openai

    received: list[str] = []
    pieces: dict[int, ToolCall] = {}
    try:
        chunks = client.chat.completions.create(**params.request(messages), stream=True)
        for chunk in chunks:
            for choice in chunk.choices:
                for call in (choice.delta.tool_calls if choice.delta else None) or []:
                    _merge_call(pieces.setdefault(call.index, {}), call.model_dump(exclude_none=True))
                if on_reasoning is not None and (thought := reasoning_of(choice.delta)):
                    on_reasoning(thought)
                delta = choice.delta.content if choice.delta else None
                if delta:
                    received.append(delta)
                    yield delta
        if calls is not None:
            calls.extend(pieces[index] for index in sorted(pieces))
    except (openai.OpenAIError, httpx2.TransportError) as exc:  # the transport can also fail mid-body
        if not received:
            raise (
                translate(exc)
                if isinstance(exc, openai.OpenAIError)
                else BackendError(f"the connection failed ({type(exc).__name__})")
            ) from None
        raise StreamInterrupted(
            f"the answer stream broke off ({type(exc).__name__})", partial="".join(received)
        ) from None


def _merge_call(call: ToolCall, piece: dict[str, Any]) -> None:
    """OpenAI streams a call's id, type and name once and its arguments in fragments."""
    for key in ("id", "type"):
        if key in piece:
            call[key] = piece[key]
    function = call.setdefault("function", {"name": "", "arguments": ""})
    for key, value in (piece.get("function") or {}).items():
        function[key] = value if key == "name" else function.get(key, "") + value
