"""A stand-in for whatever listens on a loopback port: a real HTTP server on 127.0.0.1 (in a thread of the test) that
records every request's Authorization header and answers as told. It is what an attacker who takes a port runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[str, str], tuple[int, object]]  # (path, the Authorization header) -> (status, JSON body)


def empty_model_list(path: str, authorization: str) -> tuple[int, object]:
    return 200, {"object": "list", "data": []}


def echo_the_key_in_a_401(path: str, authorization: str) -> tuple[int, object]:
    """A gateway that echoes the key it was sent in its 401 (OpenAI masks it; not every server does)."""
    key = authorization.removeprefix("Bearer ")
    message = f"Incorrect API key provided: {key}. You can find your API key at your gateway's page."
    return 401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}


@dataclass
class LoopbackServer:
    url: str  # the base URL, http://127.0.0.1:PORT/v1
    port: int
    authorizations: list[str] = field(default_factory=list)  # one per request, "" when none was sent


@contextmanager
def loopback_server(answer: Answer = empty_model_list) -> Iterator[LoopbackServer]:
    recorded: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            authorization = self.headers.get("authorization") or ""
            recorded.append(authorization)
            status, body = answer(self.path, authorization)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer  # noqa: N815 (http.server's names)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's signature)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    try:
        yield LoopbackServer(f"http://127.0.0.1:{port}/v1", port, recorded)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
