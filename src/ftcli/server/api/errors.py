"""OpenAI's error envelope (`{"error": {message, type, param, code}}`), so the SDK raises the right class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"No such {what}: {ident}", code=f"{what.replace(' ', '_')}_not_found")


def envelope(
    message: str, *, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error document: the one place it is built (responses, refusals, a stream's error event)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content=envelope(message, kind=kind, param=param, code=code), headers=headers
    )


async def handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, kind=exc.kind, param=exc.param, code=exc.code)


async def handle_unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    """The safety net behind every route: an exception nobody expected is a 500 in OpenAI's envelope, its traceback
    only in the server's log (Starlette logs it after this answer), never in the response."""
    return error_response(500, "the server failed to answer this request", kind="server_error", code="server_error")
