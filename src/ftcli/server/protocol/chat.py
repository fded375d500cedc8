"""Chat completions: the request, the whole answer, and the chunks of a streamed one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ftcli.server.protocol.common import ModelId, Request, Response

FinishReason = Literal["stop", "length", "tool_calls"]
INT64 = (-(2**63), 2**63 - 1)


class ContentPart(Request):
    type: str  # "text" parts are read; others (images, audio, files) are not for these models
    text: str = ""


class ChatMessage(Request):
    role: Literal["developer", "system", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    # an earlier answer's reasoning, as this server returns it (vLLM's name; `reasoning` as in training data): the
    # model's chat template renders it where it has a place for it
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatRequest(Request):
    """OpenAI's bounds for every sampling field (its OpenAPI spec): a value outside them is a 400 naming the field,
    never a failure later in generation. Numbers are strict (no `"1"` for 1, no NaN or infinity)."""

    model: ModelId
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, strict=True, ge=1)
    max_completion_tokens: int | None = Field(default=None, strict=True, ge=1)
    min_tokens: int | None = Field(default=None, strict=True, ge=0)  # vLLM's extension
    temperature: float | None = Field(default=None, strict=True, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, strict=True, ge=0, le=1, allow_inf_nan=False)
    n: int | None = Field(default=None, strict=True, ge=1, le=128)
    seed: int | None = Field(default=None, strict=True, ge=INT64[0], le=INT64[1])
    presence_penalty: float | None = Field(default=None, strict=True, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(default=None, strict=True, ge=-2, le=2, allow_inf_nan=False)
    stop: str | Annotated[list[str], Field(min_length=1, max_length=4)] | None = None  # up to 4 sequences
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, strict=True, ge=0, le=20)
    logit_bias: dict[str, Annotated[float, Field(strict=True, ge=-100, le=100, allow_inf_nan=False)]] | None = None
    stream: bool | None = Field(default=None, strict=True)
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if stop is not None and not all([stop] if isinstance(stop, str) else stop):
            raise ValueError("a stop sequence must not be empty")  # it would end every answer at once
        return stop

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ToolCallFunction(Response):
    name: str
    arguments: str


class ToolCall(Response):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class AssistantMessage(Response):
    omitted_when_none = frozenset({"tool_calls", "reasoning_content"})

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None
    # a thinking model's reasoning, apart from its answer (vLLM's and DeepSeek's field; not in OpenAI's schema, which
    # admits extra fields: the SDK keeps it)
    reasoning_content: str | None = None


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
    delta: dict[str, Any]  # role, content, tool_calls (with their index) as OpenAI streams them; reasoning_content
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
