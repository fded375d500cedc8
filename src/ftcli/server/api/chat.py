"""Chat completions (streamed as SSE and not) and models, for base and fine-tuned models."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.types import Receive, Scope, Send

from ftcli.data.chat_template import content_text
from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.errors import ApiError, envelope
from ftcli.server.bases import UnknownBase, resolve_base, served_adapter
from ftcli.server.limits import ChatSlots
from ftcli.server.protocol.chat import (
    AssistantMessage,
    ChatChunk,
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    FinishReason,
    ToolCall,
    Usage,
)
from ftcli.server.reasoning import Piece, ReasoningSplitter, split_reasoning
from ftcli.server.store import Store
from ftcli.server.tool_calls import safe_prefix_length, split_tool_calls

if TYPE_CHECKING:
    from ftcli.server.inference import LoadedModel, ModelCache

router = APIRouter()
T = TypeVar("T")


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


@router.post("/chat/completions", response_model=None, openapi_extra=documented_body(ChatRequest))
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
    from ftcli.server.inference import Sampling, count_text_tokens, finish_reason, generate_stream, opens_thinking

    store: Store = request.app.state.store
    limits: ChatLimits = request.app.state.chat_limits
    _check_supported(body)
    max_tokens = _max_tokens(body, limits)
    min_tokens = _whole_number(body.min_tokens, "min_tokens", 0, max_tokens, default=0)
    plain = [_message(m) for m in body.messages]
    tools: list[Any] | None = list(body.tools) if body.tools else None
    _check_prompt_size(plain, tools, limits)  # cheap, before anything is tokenized
    # Loading (and, the first time, building or converting) a model, tokenizing and generating are blocking work:
    # in a worker thread, so one request (a huge prompt, a long answer) can't stall the event loop for the others.
    base, adapter = await run_in_threadpool(_resolve, store, body.model)
    loaded = await run_in_threadpool(_load, request.app.state.models, body.model, base, adapter)
    sampling = Sampling(
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        temperature=body.temperature or 0.0,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_sequences,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
    )
    prompt_tokens = await run_in_threadpool(_count_prompt, loaded, plain, tools)
    _check_prompt_length(prompt_tokens, max_tokens, loaded, limits)
    opened = loaded.thinking and await run_in_threadpool(opens_thinking, loaded, plain, tools)
    prompt = _Prompt(
        plain,
        tools,
        calls_wanted=tools is not None and body.tool_choice != "none",
        thinking=loaded.thinking,
        opened=opened,
    )
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    stop = threading.Event()  # set when the client leaves: generation ends at its next token
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        usage_of_prompt = prompt_tokens if include_usage else None  # counted once, above
        chunks = _sse(loaded, prompt, sampling, body.model, completion_id, created, usage_of_prompt, stop)
        return _Streamed(_until_disconnected(chunks, stop), media_type="text/event-stream")

    def whole_answer() -> tuple[str, int]:
        try:
            generated = "".join(generate_stream(loaded, plain, sampling, tools, stop))
        except Exception as exc:  # noqa: BLE001 (as a stream reports it: in the envelope, without a traceback)
            raise ApiError(
                500, f"generation failed: {type(exc).__name__}", kind="server_error", code="generation_failed"
            ) from None
        return generated, count_text_tokens(loaded, generated)

    generated, completion_tokens = await _unless_disconnected(request, whole_answer, stop)
    reasoning, answer = prompt.split(generated)
    text, calls = split_tool_calls(answer) if prompt.calls_wanted else (answer, [])
    message = AssistantMessage(
        content=text if text or not calls else None,
        tool_calls=[ToolCall.model_validate(call) for call in calls] if calls else None,
        reasoning_content=reasoning,
    )
    finish: FinishReason = "tool_calls" if calls else finish_reason(completion_tokens, sampling)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[Choice(finish_reason=finish, message=message)],
        usage=Usage.of(prompt_tokens, completion_tokens),
    )


def _check_supported(body: ChatRequest) -> None:
    """Fields within OpenAI's bounds that this server can't honour are refused, not answered as if they were."""
    if body.n is not None and body.n > 1:
        raise ApiError(400, "this server generates one choice per request: n must be 1", param="n", code=UNSUPPORTED)
    if body.logprobs or body.top_logprobs:
        param = "logprobs" if body.logprobs else "top_logprobs"
        raise ApiError(400, "this server does not return log probabilities", param=param, code=UNSUPPORTED)
    if body.logit_bias:  # a bias answered as if it weren't there would be a different answer than asked for
        raise ApiError(400, "this server does not apply logit_bias", param="logit_bias", code=UNSUPPORTED)
    for index, message in enumerate(body.messages):
        parts = message.content if isinstance(message.content, list) else []
        other = next((n for n, part in enumerate(parts) if part.type != "text"), None)
        if other is not None:  # an image answered as if it weren't there would be a wrong answer
            raise ApiError(
                400,
                f"this server's models read text only: a {parts[other].type!r} content part is not supported "
                "(the local backend has no vision models yet)",
                param=f"messages[{index}].content[{other}]",
                code=UNSUPPORTED,
            )


UNSUPPORTED = "unsupported_value"  # OpenAI's code for a value a model doesn't support


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

    @property
    def max_prompt_characters(self) -> int:
        """A prompt longer than this can't fit `max_prompt_tokens` with any real tokenizer: refused by its size,
        without tokenizing (which takes a worker thread for seconds on megabytes of text)."""
        return self.max_prompt_tokens * CHARACTERS_PER_TOKEN


CHARACTERS_PER_TOKEN = 32  # far past any tokenizer's average (about 4 for English text, 3 for code)


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


def _check_prompt_size(messages: list[dict[str, Any]], tools: list[Any] | None, limits: ChatLimits) -> None:
    size = len(json.dumps([messages, tools], ensure_ascii=False))
    if size > limits.max_prompt_characters:
        raise ApiError(
            400,
            f"the messages and tools hold {size:,} characters; this server takes at most "
            f"{limits.max_prompt_characters:,} ({limits.max_prompt_tokens:,} prompt tokens)",
            param="messages",
            code="context_length_exceeded",
        )


def _count_prompt(loaded: LoadedModel, messages: list[dict[str, Any]], tools: list[Any] | None) -> int:
    """The prompt's tokens (blocking: run in a worker thread). Messages the model's chat template can't render
    (roles out of order, a shape it doesn't know) are the request's fault: a 400."""
    from ftcli.server.inference import count_tokens

    try:
        return count_tokens(loaded, messages, tools)
    except Exception as exc:  # noqa: BLE001 (jinja's TemplateError and whatever a template's code raises)
        raise ApiError(
            400,
            f"the messages can't be rendered by this model's chat template: {type(exc).__name__}: {exc}"[:500],
            param="messages",
        ) from None


def _check_prompt_length(prompt_tokens: int, max_tokens: int, loaded: LoadedModel, limits: ChatLimits) -> None:
    context = loaded.context_length
    allowed = limits.max_prompt_tokens if context is None else min(limits.max_prompt_tokens, context - max_tokens)
    if prompt_tokens > allowed:
        raise ApiError(
            400,
            f"the prompt has {prompt_tokens} tokens; this server and model take at most {max(0, allowed)} with "
            f"{max_tokens} to generate",
            param="messages",
            code="context_length_exceeded",
        )


def _message(message: ChatMessage) -> dict[str, Any]:
    """What the chat template needs (the fields the client sent); content parts joined into text as in training."""
    kept: dict[str, Any] = message.model_dump(exclude_unset=True)
    if isinstance(message.content, list):
        kept["content"] = content_text(kept["content"])
    return kept


@dataclass(frozen=True, slots=True)
class _Prompt:
    messages: list[dict[str, Any]]
    tools: list[Any] | None  # rendered into the prompt as in training
    calls_wanted: bool  # parse tool calls out of the answer (tools offered, tool_choice not "none")
    thinking: bool = False  # a thinking model's answer: its reasoning goes apart (server/reasoning.py)
    opened: bool = False  # the prompt opened the think block: the answer starts with reasoning

    def split(self, generated: str) -> tuple[str | None, str]:
        """(reasoning, answer) of a whole generated text."""
        return split_reasoning([generated], opened=self.opened) if self.thinking else (None, generated)

    def splitter(self) -> Callable[[str | None], list[Piece]]:
        """For a stream: a delta's (field, text) pieces; None (generation ended): what was held back."""
        if not self.thinking:
            return lambda delta: [("content", delta)] if delta else []
        splitter = ReasoningSplitter(opened=self.opened)
        return lambda delta: splitter.feed(delta) if delta is not None else splitter.close()


async def _unless_disconnected(request: Request, work: Callable[[], T], stop: threading.Event) -> T:
    """`work` in a worker thread while the client is listened to: when it leaves, `stop` is set, so a whole
    (non-streamed) answer stops generating at its next token, as an abandoned stream does (_until_disconnected),
    instead of holding the model and keeping the server from stopping."""

    async def listen() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the body was read already: nothing but the disconnect is left to hear
        stop.set()

    failure: Exception | None = None
    async with anyio.create_task_group() as listening:
        listening.start_soon(listen)
        try:
            result = await run_in_threadpool(work)
        except Exception as exc:  # raised below, as it is (inside the group it would come out as an ExceptionGroup)
            failure = exc
        finally:
            listening.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


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
    generated, answer, sent = "", "", 0  # text so far; its answer (reasoning apart); how much of it went out
    pieces = prompt.splitter()

    def send(delta: str | None) -> Iterator[bytes]:
        nonlocal answer, sent
        for field, text in pieces(delta):
            if field == "reasoning_content":
                yield chunk({"reasoning_content": text}, None)
            else:
                answer += text
        # with tools offered, text from a `<tool_call>` on is held back until it can be parsed
        ready = safe_prefix_length(answer) if prompt.calls_wanted else len(answer)
        if ready > sent:
            yield chunk({"content": answer[sent:ready]}, None)
            sent = ready

    try:
        for delta in generate_stream(loaded, prompt.messages, sampling, prompt.tools, stop):
            generated += delta
            yield from send(delta)
        yield from send(None)
        rest, calls = split_tool_calls(answer[sent:]) if prompt.calls_wanted else ("", [])
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
