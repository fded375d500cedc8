"""Validate HTTP exchanges against OpenAI's own OpenAPI spec (`../shared/openai-spec/`), with jsonschema.

The spec is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: each response body is checked against the schema
the spec gives for its path, method, status and content type (errors against `ErrorResponse`; each SSE `data:`
event against the stream's chunk schema), with every `#/components/...` reference resolved inside the spec.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx2

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "openai-spec" / "openapi.transformed.yml"
SPEC_URI = "urn:openai-spec"


@dataclass(frozen=True, slots=True)
class Exchange:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


@dataclass
class RecordingTransport(httpx2.BaseTransport):
    """Passes requests to the real transport and keeps each response's bytes (streams are read in full first)."""

    exchanges: list[Exchange] = field(default_factory=list)
    inner: httpx2.BaseTransport = field(default_factory=httpx2.HTTPTransport)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        self.exchanges.append(Exchange(request.method, request.url.path, response.status_code, content_type, body))
        framing = ("content-length", "transfer-encoding")  # the body is now whole: httpx2 frames it anew
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in framing]
        return httpx2.Response(response.status_code, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


@cache
def load_spec() -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC.open() as handle:
        spec = dict(yaml.load(handle, Loader=loader))
    _to_json_schema(spec)
    # A gap in the spec: it has /pause and /resume, but its job status enum lacks "paused", the status the API
    # reports for a paused job (the SDK's docs name it). Admitted here, and only here.
    spec["components"]["schemas"]["FineTuningJob"]["properties"]["status"]["enum"].append("paused")
    return spec


def _to_json_schema(node: Any) -> None:
    """Some schemas in the spec still use OpenAPI 3.0 keywords that JSON Schema 2020-12 reads differently:
    `nullable: true` (→ the type also admits null) and a boolean `exclusiveMinimum` (→ the number itself)."""
    if isinstance(node, list):
        for item in node:
            _to_json_schema(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("nullable") is True:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        node["exclusiveMinimum"] = node.pop("minimum")
    for value in node.values():
        _to_json_schema(value)


@cache
def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resource(SPEC_URI, Resource.from_contents(load_spec(), default_specification=DRAFT202012))


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _template(path: str) -> str:
    """The spec's path template for a request path (below /v1); the most literal template wins."""
    spec_paths = load_spec()["paths"]
    candidates = sorted(spec_paths, key=lambda t: -len(re.sub(r"\{[^}]+\}", "", t)))
    for template in candidates:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "(.+)", re.escape(template)) + "$"
        if re.match(pattern, path):
            return str(template)
    raise AssertionError(f"{path} is not a path of OpenAI's API")


def schema_pointer(exchange: Exchange) -> str:
    """A `$ref` to the schema this response must follow (an SSE stream: the schema of each event)."""
    if exchange.status >= 400:
        return f"{SPEC_URI}#/components/schemas/ErrorResponse"
    if exchange.content_type == "text/event-stream":
        return f"{SPEC_URI}#/components/schemas/CreateChatCompletionStreamResponse"
    template = _template(exchange.path.removeprefix("/v1"))
    method = exchange.method.lower()
    operation = load_spec()["paths"][template][method]
    status = str(exchange.status) if str(exchange.status) in operation["responses"] else "default"
    content = operation["responses"][status].get("content", {})
    assert exchange.content_type in content, f"{exchange.method} {template}: spec has no {exchange.content_type} body"
    where = ("paths", template, method, "responses", status, "content", exchange.content_type, "schema")
    return f"{SPEC_URI}#/" + _pointer(*where)


def violations(exchange: Exchange) -> list[str]:
    """Every way this response departs from the spec (empty when it conforms)."""
    from jsonschema import Draft202012Validator

    if exchange.content_type == "text/event-stream":
        events = [line.removeprefix("data: ") for line in exchange.body.decode().splitlines()]
        documents = [json.loads(event) for event in events if event.startswith("{")]
    elif exchange.content_type == "application/json":
        documents = [json.loads(exchange.body)]
    else:
        return []  # file content: bytes, nothing to validate
    validator = Draft202012Validator({"$ref": schema_pointer(exchange)}, registry=_registry())
    found = []
    for document in documents:
        for error in validator.iter_errors(document):
            where = "/".join(str(p) for p in error.absolute_path)
            found.append(f"{exchange.method} {exchange.path} {exchange.status}: {where}: {error.message[:300]}")
    return found
