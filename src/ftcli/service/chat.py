"""Chat with a model: one answer, streamed or not; a dropped stream keeps what arrived."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftcli.service.errors import BackendError, StreamInterrupted, translate

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


def complete(client: OpenAI, params: ChatParams, messages: list[Message]) -> str:
    import openai

    try:
        response = client.chat.completions.create(**params.request(messages))
    except openai.OpenAIError as exc:
        raise translate(exc) from None
    return response.choices[0].message.content or "" if response.choices else ""


def stream(client: OpenAI, params: ChatParams, messages: list[Message]) -> Iterator[str]:
    """Yield text deltas. If the connection drops mid-answer, raise StreamInterrupted with the partial text."""
    import httpx2
    import openai

    received: list[str] = []
    try:
        chunks = client.chat.completions.create(**params.request(messages), stream=True)
        for chunk in chunks:
            for choice in chunk.choices:
                delta = choice.delta.content if choice.delta else None
                if delta:
                    received.append(delta)
                    yield delta
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
