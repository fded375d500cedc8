"""Request bodies of the JSON routes, read in one place: the type must be application/json (see server/guard.py:
a page can send text/plain cross-site without asking), the text must parse as standard JSON (no NaN, no lone
surrogate, not nested past what a parser can follow), the document must be an object, and it must fit the route's
protocol model (server/protocol/). Routes declare that model in their OpenAPI document too (`documented_body`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ftcli.server.api.errors import ApiError
from ftcli.server.guard import JSON_TYPE, is_json
from ftcli.server.protocol.common import InvalidRequest, RequestT, parse

PARSED_IN_A_THREAD = 1 << 20  # bytes: a larger body is parsed off the event loop


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (for routes that judge it themselves)."""
    if not is_json(request.headers.get("content-type")):
        raise ApiError(415, f"the request body must be {JSON_TYPE}", code="unsupported_media_type")
    raw = await request.body()
    body = await run_in_threadpool(_parse, raw) if len(raw) > PARSED_IN_A_THREAD else _parse(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _parse(raw: bytes) -> Any:
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}"[:300]) from None
    if b"\\u" in raw or b"\\U" in raw:  # only an escape can make a lone surrogate: raw bytes were decoded as UTF-8
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, "the request body holds a lone surrogate (\\ud800-\\udfff): not text") from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply") from None
    return body


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


async def read_request(request: Request, model: type[RequestT]) -> RequestT:
    """The body as its protocol model; a body that doesn't fit is a 400 naming the field (OpenAI's `param`)."""
    try:
        return parse(model, await json_body(request))
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, param=exc.param) from None


def documented_body(model: type[RequestT]) -> dict[str, Any]:
    """A route's `openapi_extra`: the JSON body it reads with `read_request`, so its OpenAPI document (and the
    fuzzing built on it) knows the body. Nested models (a chat message) are inlined where they are used."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].removeprefix("#/$defs/")
                return inline({**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}})
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {JSON_TYPE: {"schema": inline(schema)}}}}
