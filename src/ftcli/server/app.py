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

from ftcli.server.api import chat, files, jobs, web
from ftcli.server.api.chat import ChatLimits
from ftcli.server.api.errors import ApiError, handle_api_error
from ftcli.server.guard import BrowserGuard
from ftcli.server.inference import ModelCache
from ftcli.server.runner import JobRunner
from ftcli.server.store import Store

DEFAULT_MAX_UPLOAD = 8 * 1024 * 1024 * 1024


def create_app(
    data_dir: Path,
    *,
    api_key: str | None = None,
    parallel_jobs: int = 1,
    processes_per_job: int | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    lora_defaults: dict[str, float] | None = None,
    host: str = "127.0.0.1",
    chat_limits: ChatLimits | None = None,
) -> FastAPI:
    """`lora_defaults`: the server's own lora_rank / lora_alpha / lora_dropout for jobs that don't set them (else
    per-base defaults apply); written into each job's hyperparameters, so the job reports what it trained with."""
    store = Store(data_dir)
    runner = JobRunner(store, parallel=parallel_jobs, processes=processes_per_job)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        yield
        runner.stop()

    app = FastAPI(title="ftcli local backend", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store, app.state.runner, app.state.models = store, runner, ModelCache()
    app.state.max_upload_bytes = max_upload_bytes
    app.state.lora_defaults = dict(lora_defaults or {})
    app.state.chat_limits = chat_limits or ChatLimits()
    app.add_exception_handler(ApiError, handle_api_error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(
            status_code=400,
            content={
                "error": {
                    "message": first.get("msg", "invalid request"),
                    "type": "invalid_request_error",
                    "param": param,
                    "code": None,
                }
            },
        )

    guard = BrowserGuard(host)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        # The page itself holds no data (it asks for the key and sends it with every API call it makes).
        if api_key is not None and not (request.method == "GET" and request.url.path == web.PAGE_PATH):
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                return JSONResponse(
                    status_code=401,
                    content={
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                )
        return await call_next(request)

    # Added last, so it runs first: a rebound or cross-site request is refused before anything else looks at it.
    @app.middleware("http")
    async def refuse_other_pages(request: Request, call_next: Any) -> Any:
        reason = guard.refusal(request.headers.get("host"), request.headers.get("origin"))
        if reason is not None:
            return JSONResponse(
                status_code=403,
                content={
                    "error": {"message": reason, "type": "invalid_request_error", "param": None, "code": "forbidden"}
                },
            )
        return await call_next(request)

    for router in (files.router, jobs.router, chat.router):
        app.include_router(router, prefix="/v1")
    app.include_router(web.router)
    return app
