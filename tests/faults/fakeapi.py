"""A small in-memory stand-in for the fine-tuning API behind `httpx2.MockTransport`, with scripted faults.

Only for streaming and fault cases the real servers can't be made to produce on demand; request shapes are
checked against the spec by the Steady contract tests.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

Fault = Callable[[httpx2.Request], httpx2.Response | None]


def job_object(job_id: str, status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": int(time.time()),
        "model": "gpt-4o-mini",
        "status": status,
        "training_file": "file-1",
        "validation_file": None,
        "fine_tuned_model": None,
        "finished_at": None,
        "error": None,
        "hyperparameters": {},
        "organization_id": "org",
        "result_files": [],
        "seed": 1,
        "trained_tokens": None,
        "metadata": None,
        **extra,
    }


@dataclass
class FakeAPI:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)  # consulted in order; a fault returns a response or None
    parts: dict[str, bytes] = field(default_factory=dict)  # part id -> bytes received
    statuses: Iterator[str] = field(default_factory=lambda: iter(()))
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    completed: bytes = b""
    contents: dict[str, bytes] = field(default_factory=dict)  # file id -> what GET /files/{id}/content returns
    answer: Callable[[dict[str, Any]], str] = lambda body: "ok"  # chat completions: request body -> answer
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)  # GET /models
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # job id -> its events, newest first

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def client(self, **options: Any):  # type: ignore[no-untyped-def]
        from ftcli.service.client import make_client
        from ftcli.service.settings import Settings

        options.setdefault("max_retries", 0)
        return make_client(
            Settings(kind="compatible", base_url="http://fake.test/v1", api_key="sk-fake-0123456789"),
            http_client=httpx2.Client(transport=self.transport()),
            **options,
        )

    def _stream(self, body: dict[str, Any]) -> httpx2.Response:
        words = self.answer(body).split(" ")
        chunks = [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}, "finish_reason": None}],
            }
            for i, word in enumerate(words)
        ]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(chunks))

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append((request.method, request.url.path))
        for fault in list(self.faults):
            response = fault(request)
            if response is not None:
                return response
        path = request.url.path.removeprefix("/v1")
        if request.method == "GET" and path == "/models":
            return httpx2.Response(200, json={"object": "list", "data": self.models})
        if request.method == "POST" and path == "/fine_tuning/jobs":
            body = json.loads(request.content)
            job = job_object(f"ftjob-{len(self.jobs) + 1}", metadata=body.get("metadata"))
            self.jobs[job["id"]] = job
            return httpx2.Response(200, json=job)
        if request.method == "GET" and path == "/fine_tuning/jobs":
            wanted = {k[len("metadata[") : -1]: v for k, v in request.url.params.items() if k.startswith("metadata[")}
            found = [j for j in self.jobs.values() if all((j["metadata"] or {}).get(k) == v for k, v in wanted.items())]
            return httpx2.Response(200, json={"object": "list", "data": found, "has_more": False})
        if re.fullmatch(r"/fine_tuning/jobs/([^/]+)/checkpoints", path) and request.method == "GET":
            return httpx2.Response(200, json={"object": "list", "data": [], "has_more": False})
        match = re.fullmatch(r"/fine_tuning/jobs/([^/]+)(/events)?", path)
        if match and request.method == "GET":
            job = self.jobs[match.group(1)]
            if match.group(2):
                data = self.events.get(match.group(1), [])
                return httpx2.Response(200, json={"object": "list", "data": data, "has_more": False})
            job["status"] = next(self.statuses, job["status"])
            return httpx2.Response(200, json=job)
        if request.method == "POST" and path == "/uploads":
            return httpx2.Response(
                200,
                json={
                    "id": "upload_1",
                    "object": "upload",
                    "bytes": 0,
                    "created_at": 1,
                    "expires_at": 2,
                    "filename": "f",
                    "purpose": "fine-tune",
                    "status": "pending",
                },
            )
        match = re.fullmatch(r"/uploads/([^/]+)/parts", path)
        if match:
            part_id = f"part_{len(self.parts) + 1}"
            self.parts[part_id] = _multipart_data(request)
            return httpx2.Response(
                200, json={"id": part_id, "object": "upload.part", "created_at": 1, "upload_id": match.group(1)}
            )
        match = re.fullmatch(r"/uploads/([^/]+)/complete", path)
        if match:
            body = json.loads(request.content)
            data = b"".join(self.parts[p] for p in body["part_ids"])
            file = {
                "id": "file-big",
                "object": "file",
                "bytes": len(data),
                "created_at": 1,
                "filename": "f",
                "purpose": "fine-tune",
                "status": "processed",
            }
            self.completed = data
            self.files[file["id"]] = file
            return httpx2.Response(
                200,
                json={
                    "id": match.group(1),
                    "object": "upload",
                    "bytes": len(data),
                    "created_at": 1,
                    "expires_at": 2,
                    "filename": "f",
                    "purpose": "fine-tune",
                    "status": "completed",
                    "file": file,
                },
            )
        if request.method == "POST" and path == "/chat/completions":
            body = json.loads(request.content)
            self.chat_requests.append(body)
            if body.get("stream"):
                return self._stream(body)
            return httpx2.Response(
                200,
                json={
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": self.answer(body)},
                        }
                    ],
                },
            )
        if request.method == "POST" and path == "/files":  # one request: the bytes are the form's file part
            data = _multipart_data(request, "file")
            file = {
                "id": f"file-{len(self.files) + 1}",
                "object": "file",
                "bytes": len(data),
                "created_at": 1,
                "filename": "upload.jsonl",
                "purpose": "fine-tune",
                "status": "processed",
            }
            self.files[file["id"]] = file
            self.contents[file["id"]] = data
            return httpx2.Response(200, json=file)
        match = re.fullmatch(r"/files/([^/]+)/content", path)
        if match and match.group(1) in self.contents:
            return httpx2.Response(200, content=self.contents[match.group(1)])
        match = re.fullmatch(r"/files/([^/]+)", path)
        if match and request.method == "GET" and match.group(1) in self.files:
            return httpx2.Response(200, json=self.files[match.group(1)])
        return httpx2.Response(404, json={"error": {"message": f"no route {path}", "type": "invalid_request_error"}})


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return ("".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()


def _multipart_data(request: httpx2.Request, name: str = "data") -> bytes:
    content = request.read()
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for section in content.split(b"--" + boundary):
        if f'name="{name}"'.encode() in section:
            return section.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    raise AssertionError(f"no {name} part")


def error(status: int, message: str, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, json={"error": {"message": message, "type": "x", "code": None}})
