"""A fault-injecting HTTP proxy on 127.0.0.1, between ftcli and a real backend, driven by scripted rules.

Each client connection carries one request (the proxy answers `Connection: close`; clients reconnect). A rule
matches a method and a path pattern and, for its first `times` matches, does one of:
- `status`: answer itself with that status (and `Retry-After` when given), never reaching the backend;
- `reset_after_forward`: forward the request, then cut the connection before any response byte (the backend did
  the work; the client never hears of it);
- `cut_body`: forward, send the headers and the first `keep` bytes of the response body, then cut the connection;
- `delay`: wait `seconds` before forwarding.
Everything else is passed through as it comes, streamed responses (SSE) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Rule:
    method: str
    path: str  # a regular expression, matched against the whole path
    action: str  # status | reset_after_forward | cut_body | delay
    times: int = 1
    status: int = 500
    retry_after: str | None = None
    keep: int = 0
    seconds: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.hits < self.times and method == self.method and re.fullmatch(self.path, path) is not None


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:8765
    key: str = ""  # the upstream server's key, for the tests' clients (the proxy passes headers on as they come)
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    port: int = 0
    handling: int = 0  # connections open now
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                self._loop.run_until_complete(self._shut_down(server))
                self._loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _shut_down(self, server: asyncio.Server) -> None:
        # Stop listening, cancel the connections still open (a client may hold one the test no longer needs; each
        # handler closes its sockets as it unwinds), then give the closed transports a few loop turns to finish
        # closing: a socket left half-closed when the loop goes is reported as a ResourceWarning, a test error.
        server.close()
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)

    def add(self, *rules: Rule) -> None:
        self.rules.extend(rules)

    # -- one connection, one request -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled when the proxy stops: end quietly (Python 3.11's streams log a cancelled handler as an error).
        self.handling += 1
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._exchange(reader, writer)
        finally:
            self.handling -= 1

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rule: Rule | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
            body = await self._body(reader, {k.strip().lower(): v.strip() for k, v in headers})
            path = urlsplit(target).path
            rule = next((r for r in self.rules if r.matches(method, path)), None)
            if rule is not None:
                rule.hits += 1
            self.seen.append((method, path, rule.action if rule else "pass"))
            if rule is not None and rule.action == "status":
                extra = f"Retry-After: {rule.retry_after}\r\n" if rule.retry_after else ""
                payload = b'{"error": {"message": "injected fault", "type": "server_error"}}'
                writer.write(
                    f"HTTP/1.1 {rule.status} Injected\r\nContent-Type: application/json\r\n{extra}"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                return
            if rule is not None and rule.action == "delay":
                await asyncio.sleep(rule.seconds)
            await self._forward(method, target, headers, body, writer, rule)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away
        finally:
            if rule is not None and rule.action in ("reset_after_forward", "cut_body"):
                writer.transport.abort()  # a reset, not a clean close
            else:
                writer.close()

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        return b""

    async def _forward(
        self,
        method: str,
        target: str,
        headers: list[list[str]],
        body: bytes,
        writer: asyncio.StreamWriter,
        rule: Rule | None,
    ) -> None:
        upstream = urlsplit(self.upstream)
        up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port)
        skip = ("connection", "content-length", "transfer-encoding", "host", "keep-alive")
        kept = "".join(f"{k}:{v}\r\n" for k, v in headers if k.strip().lower() not in skip)
        up_writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {upstream.netloc}\r\n{kept}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await up_writer.drain()
        try:
            if rule is not None and rule.action == "reset_after_forward":
                await up_reader.read()  # the backend finishes its work; the client hears nothing
                return
            head = await up_reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            out = [status_line] + [
                h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")
            ]
            out.append("Connection: close")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            budget = rule.keep if rule is not None and rule.action == "cut_body" else None
            while block := await up_reader.read(4096):
                if budget is not None:
                    writer.write(block[:budget])
                    await writer.drain()
                    budget -= min(budget, len(block))
                    if budget == 0:
                        return
                    continue
                writer.write(block)
                await writer.drain()
        finally:
            up_writer.close()
