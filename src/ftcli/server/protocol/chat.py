"""Chat completions: the request, the whole answer, and the chunks of a streamed one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ftcli.server.protocol.common import Request, Response

FinishReason = Literal["stop", "length", "tool_calls"]


class ChatRequest(Request):
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, strict=True)
    max_completion_tokens: int | None = Field(default=None, strict=True)
    min_tokens: int | None = Field(default=None, strict=True)  # vLLM's extension
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None


class ToolCallFunction(Response):
    name: str
    arguments: str


class ToolCall(Response):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class AssistantMessage(Response):
    omitted_when_none = frozenset({"tool_calls"})

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None


class Choice(Response):
    index: int = 0
    finish_reason: FinishReason
    logprobs: None = None
    message: AssistantMessage


class Usage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class ChatCompletion(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkChoice(Response):
    index: int = 0
    delta: dict[str, Any]  # role, content, or tool_calls (with their index), as OpenAI streams them
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatChunk(Response):
    omitted_when_none = frozenset({"usage"})  # only the last chunk, when the client asked for it

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None

    def sse(self) -> bytes:
        """One server-sent event."""
        return f"data: {self.model_dump_json()}\n\n".encode()
