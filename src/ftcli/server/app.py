"""The FastAPI application of `ftcli serve`: OpenAI's paths under /v1, bearer-key auth when configured, and
OpenAI's error envelope everywhere."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ftcli.server.adapters import DEFAULT_ADAPTER_CACHE_MB
from ftcli.server.api import chat, evals, exports, files, graders, jobs, models, web
from ftcli.server.api.chat import ChatLimits
from ftcli.server.api.errors import ApiError, error_response, handle_api_error, handle_unexpected
from ftcli.server.guard import BrowserGuard, FailedKeys, is_loopback
from ftcli.server.inference import ModelCache
from ftcli.server.limits import MAX_JSON_BODY, BodyLimit, ChatSlots
from ftcli.server.runner import Cluster, JobRunner
from ftcli.server.store import Store
from ftcli.server.vllm_engine import VllmSettings

DEFAULT_MAX_UPLOAD = 8 * 1024 * 1024 * 1024


def create_app(
    data_dir: Path,
    *,
    api_key: str | None = None,
    parallel_jobs: int = 1,
    processes_per_job: int | None = None,
    cluster: Cluster | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    lora_defaults: dict[str, float] | None = None,
    host: str = "127.0.0.1",
    chat_limits: ChatLimits | None = None,
    chat_slots: ChatSlots | None = None,
    max_json_bytes: int = MAX_JSON_BODY,
    failed_keys: FailedKeys | None = None,
    adapter_cache_mb: int = DEFAULT_ADAPTER_CACHE_MB,
    vllm: VllmSettings | None = None,
) -> FastAPI:
    """`lora_defaults`: the server's own lora_rank / lora_alpha / lora_dropout for jobs that don't set them (else
    per-base defaults apply); written into each job's hyperparameters, so the job reports what it trained with.
    `failed_keys`: how repeated wrong keys are slowed down; by default on any host but loopback (where every local
    user shares 127.0.0.1, and one could lock the others out). `adapter_cache_mb`: memory for fine-tunes' adapters
    beside their base (server/adapters.py). `vllm`: chats answered by vLLM with these settings (`serve --engine
    vllm`, server/vllm_engine.py) instead of the built-in engine."""
    store = Store(data_dir)
    limits = chat_limits or ChatLimits()
    runner = JobRunner(
        store, parallel=parallel_jobs, processes=processes_per_job, cluster=cluster, judge_max_tokens=limits.max_tokens
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        yield
        runner.stop()
        _app.state.models.close()  # vLLM's engine, where it answers: its GPU memory back

    app = FastAPI(title="ftcli local backend", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store, app.state.runner, app.state.models = store, runner, ModelCache(adapter_cache_mb, vllm=vllm)
    app.state.max_upload_bytes = max_upload_bytes
    app.state.lora_defaults = dict(lora_defaults or {})
    app.state.chat_limits = limits
    app.state.chat_slots = chat_slots or ChatSlots()
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(Exception, handle_unexpected)  # the safety net: a 500 in the envelope, no traceback

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(400, first.get("msg", "invalid request"), param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own errors (an unknown path, a wrong method, a body past its limit) in OpenAI's envelope."""
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)

    # A plain ASGI middleware (not @app.middleware): it passes receive and send straight through, so a streamed
    # answer still hears its client leave (see api/chat.py's _until_disconnected).
    app.add_middleware(BodyLimit, upload_limit=max_upload_bytes, json_limit=max_json_bytes)
    if failed_keys is None and not is_loopback(host):
        failed_keys = FailedKeys()
    # the outer one: refuses first
    app.add_middleware(Gatekeeper, guard=BrowserGuard(host), api_key=api_key, failed_keys=failed_keys)

    for router in (files.router, jobs.router, chat.router, models.router, graders.router):
        app.include_router(router, prefix="/v1")
    app.include_router(web.router)
    app.include_router(exports.router)
    app.include_router(evals.router)
    return app


class Gatekeeper:
    """Before any route: a rebound or cross-site request is refused (server/guard.py), then a missing or wrong
    bearer key when the server has one (compared in constant time), and a client that sent too many wrong keys
    waits (429 with Retry-After) before its next one is looked at. The page itself holds no data: it asks for the
    key and sends it with every API call it makes."""

    def __init__(
        self, app: ASGIApp, *, guard: BrowserGuard, api_key: str | None, failed_keys: FailedKeys | None = None
    ) -> None:
        self.app, self.guard, self.api_key, self.failed_keys = app, guard, api_key, failed_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason = self.guard.refusal(headers.get("host"), headers.get("origin"))
        if reason is not None:
            await error_response(403, reason, code="forbidden")(scope, receive, send)
            return
        page = scope["method"] == "GET" and scope["path"] == web.PAGE_PATH
        if self.api_key is not None and not page:
            client = scope["client"][0] if scope.get("client") else None
            # this machine's users all arrive as loopback, and one could lock the others out: they need the long
            # key anyway, and guessing it from here is no faster than from elsewhere
            counted = self.failed_keys if client is None or not is_loopback(client) else None
            wait = counted.retry_after(client) if counted is not None else None
            if wait is not None:
                message = f"Too many incorrect API keys from this address: retry in {wait} s"
                refusal = error_response(
                    429, message, kind="requests", code="rate_limit_exceeded", headers={"Retry-After": str(wait)}
                )
                await refusal(scope, receive, send)
                return
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
                if counted is not None:
                    counted.failed(client)
                await error_response(401, "Incorrect API key provided", code="invalid_api_key")(scope, receive, send)
                return
            if counted is not None:
                counted.succeeded(client)
        await self.app(scope, receive, send)
