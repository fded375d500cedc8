"""Request bodies of the JSON routes, read in one place: the type must be application/json (see server/guard.py:
a page can send text/plain cross-site without asking), the text must parse, the document must be an object, and
it must fit the route's protocol model (server/protocol/)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ftcli.server.api.errors import ApiError
from ftcli.server.guard import JSON_TYPE, is_json
from ftcli.server.protocol.common import InvalidRequest, RequestT, parse


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (for routes that judge it themselves)."""
    if not is_json(request.headers.get("content-type")):
        raise ApiError(415, f"the request body must be {JSON_TYPE}", code="unsupported_media_type")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


async def read_request(request: Request, model: type[RequestT]) -> RequestT:
    """The body as its protocol model; a body that doesn't fit is a 400 naming the field (OpenAI's `param`)."""
    try:
        return parse(model, await json_body(request))
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, param=exc.param) from None
