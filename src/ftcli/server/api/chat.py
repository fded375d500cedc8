"""Chat completions (streamed as SSE and not) and models, for base and fine-tuned models."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.types import Receive, Scope, Send

from ftcli.server.api.bodies import read_request
from ftcli.server.api.errors import ApiError, envelope
from ftcli.server.bases import UnknownBase, resolve_base, served_adapter
from ftcli.server.limits import ChatSlots
from ftcli.server.protocol.chat import (
    AssistantMessage,
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Choice,
    ChunkChoice,
    FinishReason,
    ToolCall,
    Usage,
)
from ftcli.server.store import Store
from ftcli.server.tool_calls import safe_prefix_length, split_tool_calls

if TYPE_CHECKING:
    from ftcli.server.inference import LoadedModel, ModelCache

router = APIRouter()


def _resolve(store: Store, model: str) -> tuple[Path, Path | None]:
    row = store.model(model)
    try:
        if row is not None:
            return resolve_base(row["base"], store.data_dir), Path(row["adapter"])
        adapter = served_adapter(model)  # an adapter folder of `serve --model-dir`, on its base
        if adapter is not None:
            return resolve_base(adapter[0], store.data_dir), adapter[1]
        return resolve_base(model, store.data_dir), None
    except UnknownBase as exc:
        raise ApiError(
            404, f"The model {model!r} does not exist: {exc}", param="model", code="model_not_found"
        ) from None


@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request) -> ChatCompletion | StreamingResponse:
    body = await read_request(request, ChatRequest)
    slots: ChatSlots = request.app.state.chat_slots
    await slots.acquire()  # a chat holds worker threads: only a few at once (see server/limits.py)
    try:
        answer = await _answer(request, body)
    except BaseException:
        slots.release()
        raise
    if isinstance(answer, _Streamed):
        answer.on_close = slots.release  # held until the stream ends or its client leaves
    else:
        slots.release()
    return answer


async def _answer(request: Request, body: ChatRequest) -> ChatCompletion | StreamingResponse:
    from ftcli.server.inference import Sampling, count_text_tokens, count_tokens, finish_reason, generate_stream

    store: Store = request.app.state.store
    limits: ChatLimits = request.app.state.chat_limits
    max_tokens = _max_tokens(body, limits)
    # Loading (and, the first time, building or converting) a model and generating are blocking work: in a
    # worker thread, so one request can't stall the event loop for the others.
    base, adapter = await run_in_threadpool(_resolve, store, body.model)
    loaded = await run_in_threadpool(_load, request.app.state.models, body.model, base, adapter)
    min_tokens = _whole_number(body.min_tokens, "min_tokens", 0, max_tokens, default=0)
    sampling = Sampling(
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        temperature=body.temperature or 0.0,
        top_p=body.top_p or 1.0,
        seed=body.seed,
    )
    plain = [_message(m) for m in body.messages]
    tools: list[Any] | None = list(body.tools) if body.tools else None
    prompt_tokens = count_tokens(loaded, plain, tools)
    _check_prompt_length(prompt_tokens, max_tokens, loaded, limits)
    prompt = _Prompt(plain, tools, calls_wanted=tools is not None and body.tool_choice != "none")
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        stop = threading.Event()
        usage_of_prompt = prompt_tokens if include_usage else None  # counted once, above
        chunks = _sse(loaded, prompt, sampling, body.model, completion_id, created, usage_of_prompt, stop)
        return _Streamed(_until_disconnected(chunks, stop), media_type="text/event-stream")
    generated = await run_in_threadpool(lambda: "".join(generate_stream(loaded, plain, sampling, tools)))
    completion_tokens = count_text_tokens(loaded, generated)
    text, calls = split_tool_calls(generated) if prompt.calls_wanted else (generated, [])
    message = AssistantMessage(
        content=text if text or not calls else None,
        tool_calls=[ToolCall.model_validate(call) for call in calls] if calls else None,
    )
    finish: FinishReason = "tool_calls" if calls else finish_reason(completion_tokens, sampling)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[Choice(finish_reason=finish, message=message)],
        usage=Usage.of(prompt_tokens, completion_tokens),
    )


class _Streamed(StreamingResponse):
    """A streamed answer that calls `on_close` once it is over, however it ended (even when its body never ran)."""

    on_close: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()


def _load(models: ModelCache, name: str, base: Path, adapter: Path | None) -> LoadedModel:
    """A model in memory; a model whose files can't be loaded is an error in OpenAI's envelope, not a bare 500."""
    try:
        return models.get(base, adapter)
    except Exception as exc:  # noqa: BLE001 (any loader failure: broken config, missing or corrupt weights)
        raise ApiError(
            500,
            f"the model {name!r} could not be loaded: {type(exc).__name__}: {exc}"[:500],
            code="model_load_failed",
            kind="server_error",
        ) from None


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """What one chat request may ask of this machine (`ftcli serve --max-tokens`, `--max-prompt-tokens`)."""

    max_tokens: int = 4096  # generated tokens per answer
    max_prompt_tokens: int = 16384  # tokens of the rendered prompt (and never past the model's context)
    default_max_tokens: int = 256


def _max_tokens(body: ChatRequest, limits: ChatLimits) -> int:
    key, value = (
        ("max_completion_tokens", body.max_completion_tokens)
        if body.max_completion_tokens is not None
        else ("max_tokens", body.max_tokens)
    )
    return _whole_number(value, key, 1, limits.max_tokens, default=min(limits.default_max_tokens, limits.max_tokens))


def _whole_number(value: int | None, key: str, low: int, high: int, *, default: int) -> int:
    if value is None:
        return default
    if value < low:
        raise ApiError(400, f"{key} must be an integer of at least {low}", param=key)
    if value > high:
        raise ApiError(400, f"{key} is at most {high} on this server and request, got {value}", param=key)
    return value


def _check_prompt_length(prompt_tokens: int, max_tokens: int, loaded: Any, limits: ChatLimits) -> None:
    context = getattr(loaded.model.config, "max_position_embeddings", None)
    allowed = (
        min(limits.max_prompt_tokens, context - max_tokens) if isinstance(context, int) else limits.max_prompt_tokens
    )
    if prompt_tokens > allowed:
        raise ApiError(
            400,
            f"the prompt has {prompt_tokens} tokens; this server and model take at most {max(0, allowed)} with "
            f"{max_tokens} to generate",
            param="messages",
            code="context_length_exceeded",
        )


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """What the chat template needs; content parts (`[{"type": "text", ...}]`) joined into text."""
    kept: dict[str, Any] = {
        k: message[k] for k in ("role", "content", "tool_calls", "tool_call_id", "name") if k in message
    }
    if isinstance(kept.get("content"), list):
        kept["content"] = "".join(p.get("text", "") for p in kept["content"] if isinstance(p, dict))
    return kept


@dataclass(frozen=True, slots=True)
class _Prompt:
    messages: list[dict[str, Any]]
    tools: list[Any] | None  # rendered into the prompt as in training
    calls_wanted: bool  # parse tool calls out of the answer (tools offered, tool_choice not "none")


async def _until_disconnected(chunks: Iterator[bytes], stop: threading.Event) -> AsyncIterator[bytes]:
    """The stream's chunks until the answer ends or the client leaves; either way `stop` is set, so an abandoned
    answer stops generating at its next token instead of holding the model for tokens nobody reads."""
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:  # the answer ended, or the response was cancelled because its client left
        stop.set()


def _sse(
    loaded: Any,
    prompt: _Prompt,
    sampling: Any,
    model: str,
    completion_id: str,
    created: int,
    usage_of_prompt: int | None,  # the prompt's tokens when the client asked for usage (stream_options)
    stop: threading.Event,
) -> Iterator[bytes]:
    from ftcli.server.inference import count_text_tokens, finish_reason, generate_stream

    def chunk(delta: dict[str, Any], finish: FinishReason | None) -> bytes:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return ChatChunk(id=completion_id, created=created, model=model, choices=[choice]).sse()

    yield chunk({"role": "assistant", "content": ""}, None)
    generated, sent = "", 0  # text so far; how much of it went out as content
    try:
        for delta in generate_stream(loaded, prompt.messages, sampling, prompt.tools, stop):
            generated += delta
            # with tools offered, text from a `<tool_call>` on is held back until it can be parsed
            ready = safe_prefix_length(generated) if prompt.calls_wanted else len(generated)
            if ready > sent:
                yield chunk({"content": generated[sent:ready]}, None)
                sent = ready
        rest, calls = split_tool_calls(generated[sent:]) if prompt.calls_wanted else ("", [])
        if rest:
            yield chunk({"content": rest}, None)
        for index, call in enumerate(calls):
            yield chunk({"tool_calls": [{"index": index, **call}]}, None)
        finish: FinishReason = "tool_calls" if calls else finish_reason(count_text_tokens(loaded, generated), sampling)
        yield chunk({}, finish)
    except Exception as exc:  # an error mid-stream is a data event, then [DONE]
        error = envelope(f"generation failed: {type(exc).__name__}", kind="server_error")
        yield f"data: {json.dumps(error)}\n\n".encode()
    if usage_of_prompt is not None:
        usage = Usage.of(usage_of_prompt, count_text_tokens(loaded, generated))
        yield ChatChunk(id=completion_id, created=created, model=model, choices=[], usage=usage).sse()
    yield b"data: [DONE]\n\n"
