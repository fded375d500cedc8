"""What one client may ask of the server: how large a request body may be, and how many chats run at once.

Bodies are limited before any route reads them (a declared `Content-Length` past the limit is refused at once; a
chunked body is counted as it arrives), so neither a huge JSON document nor a multipart upload past `--max-upload`
is ever spooled to disk or memory. Chats hold a worker thread while they load a model or wait for tokens: at most a
few run at once and the rest wait without a thread, so a flood of chats can't starve every other route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ftcli.server.api.errors import ApiError, error_response

MAX_JSON_BODY = 16 * 1024 * 1024  # far above any chat or job request: prompts are capped in tokens anyway
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and fields around an upload's bytes


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than this server's {limit:,}-byte limit")


def _is_upload(method: str, path: str) -> bool:
    """The multipart routes that carry a file's bytes (limited by --max-upload, not by the JSON limit)."""
    return method == "POST" and (path == "/v1/files" or (path.startswith("/v1/uploads/") and path.endswith("/parts")))


class BodyLimit:
    """Plain ASGI (like the Gatekeeper), so a stream still hears its client leave."""

    def __init__(self, app: ASGIApp, *, upload_limit: int, json_limit: int = MAX_JSON_BODY) -> None:
        self.app, self.upload_limit, self.json_limit = app, upload_limit, json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = _is_upload(scope["method"], scope["path"])
        limit = self.upload_limit + MULTIPART_OVERHEAD if upload else self.json_limit
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        await self.app(scope, limited_receive(receive, limit), send)


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`, when it sends one."""
    declared = Headers(scope=scope).get("content-length", "")
    return int(declared) if declared.isdigit() else None


def limited_receive(receive: Receive, limit: int, error: Callable[[], Exception] | None = None) -> Receive:
    """`receive` that counts the body's bytes as they arrive and raises once they pass `limit` (by default
    BodyTooLarge, answered in OpenAI's envelope by the app's HTTPException handler): nothing past it is read."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise error() if error is not None else BodyTooLarge(limit)
        return message

    return counted


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, BodyTooLarge(limit).detail, code="request_too_large")


@dataclass
class ChatSlots:
    """At most `running` chats hold a thread at once; up to `waiting` more wait for a slot (without a thread), and
    past that a chat is told to retry (429, as OpenAI does under load; the SDK retries it)."""

    running: int = 16  # answers are batched (server/batching.py): as many as one batch holds, each with a thread
    waiting: int = 64
    _slots: anyio.Semaphore = field(init=False)
    _waiting: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._slots = anyio.Semaphore(self.running)

    async def acquire(self) -> None:
        if self._slots.value == 0 and self._waiting >= self.waiting:
            raise ApiError(
                429, "the server is busy with other chats; retry shortly", code="rate_limit_exceeded", kind="requests"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    def release(self) -> None:
        self._slots.release()
