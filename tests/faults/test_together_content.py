"""What the Together backend does with images and reasoning traces (issue 23), through `train`'s service layer
against an in-memory Together (httpx2.MockTransport): images train with Together's vision option
(`multimodal_params.train_vision`) on a model whose limits list vision; reasoning goes as it is (Together's files take
`reasoning_content`, https://docs.together.ai/docs/fine-tuning/reasoning) on a model whose limits list reasoning;
everything else is refused naming why before a byte is uploaded or a job created. `check --model` on a Together name
flags what Together would leave out (FT321) on the same line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.service.errors import FtcliError, UsageError
from ftcli.service.jobs import JobRequest
from ftcli.service.training import prepare
from tests.conftest import qa
from tests.faults.test_together_faults import LIMITS, FakeTogether

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
MODEL = "meta-llama/Llama-3.1-8B"  # the model FakeTogether knows


class Together(FakeTogether):
    """FakeTogether with uploads, file contents, and the model's limits as a test sets them."""

    def __init__(self, **limits: Any) -> None:
        super().__init__()
        self.limits = {**LIMITS, **limits}
        self.uploaded: dict[str, bytes] = {}
        self.created: list[dict[str, Any]] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/v1")
        if request.method == "POST" and path == "/files/upload":
            self.requests.append((request.method, path))
            file_id = f"file-{len(self.uploaded) + 1}"
            self.uploaded[file_id] = _form_file(request)
            return httpx2.Response(200, json={"id": file_id, "filename": "train.jsonl", "bytes": 1, "Processed": True})
        if request.method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            self.requests.append((request.method, path))
            return httpx2.Response(200, content=self.uploaded[path.split("/")[2]])
        if path == "/fine-tunes/models/limits":
            self.requests.append((request.method, path))
            return httpx2.Response(200, json=self.limits)
        if request.method == "POST" and path == "/fine-tunes":
            self.created.append(json.loads(request.content))
        return super().handle(request)

    def sent(self) -> list[tuple[str, str]]:
        """The requests that sent something (an upload, a job)."""
        return [(method, path) for method, path in self.requests if method == "POST"]


def _form_file(request: httpx2.Request) -> bytes:
    content = request.read()
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for section in content.split(b"--" + boundary):
        if b'name="file"' in section:
            return section.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
    raise AssertionError("no file in the form")


def looking(i: int) -> dict[str, Any]:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": f"Picture {i}: what is it?"}, image]},
                         {"role": "assistant", "content": f"A single dot, number {i}."}]}  # fmt: skip


def answer(content: str, reasoning: str) -> dict[str, str]:
    return {"role": "assistant", "content": content, "reasoning_content": reasoning}


def thinking(i: int) -> dict[str, Any]:
    question = {"role": "user", "content": f"What is {i} plus {i}?"}
    return {"messages": [question, answer(f"{2 * i}", f"{i} and {i} make {2 * i}.")]}


def two_turns(i: int) -> dict[str, Any]:
    follow_up = {"role": "user", "content": "And doubled?"}
    return {"messages": [*thinking(i)["messages"], follow_up, answer(f"{4 * i}", f"Twice {2 * i}.")]}


def train(together: Together, data: Path | str, **extra: Any) -> dict[str, Any]:
    backend = together.backend()
    request = JobRequest(model=MODEL, training_file=str(data), method="sft", extra_hyperparameters=extra)
    prepared = prepare(backend, request)
    backend.create_job(prepared.request)
    (body,) = together.created
    return body


def test_images_train_with_togethers_vision_option(write_jsonl: Callable[..., Path]) -> None:
    together = Together(supports_vision=True)
    data = write_jsonl([looking(i) for i in range(12)])
    body = train(together, data)
    assert body["multimodal_params"] == {"train_vision": True}
    assert together.uploaded["file-1"] == data.read_bytes()  # the images go as they are: data URLs in image_url parts


def test_the_vision_option_is_the_users_to_turn_off(write_jsonl: Callable[..., Path]) -> None:
    together = Together(supports_vision=True)
    body = train(together, write_jsonl([looking(i) for i in range(12)]), train_vision=False)
    assert body["multimodal_params"] == {"train_vision": False}


def test_text_alone_sends_no_vision_option_and_asks_nothing_more(write_jsonl: Callable[..., Path]) -> None:
    together = Together(supports_vision=True)
    body = train(together, write_jsonl([qa(i) for i in range(12)]))
    assert "multimodal_params" not in body
    assert ("GET", "/files/file-1/content") not in together.requests


def test_images_on_a_model_without_vision_are_refused_before_anything_is_sent(
    write_jsonl: Callable[..., Path],
) -> None:
    together = Together(supports_vision=False)
    data = write_jsonl([qa(0), looking(1), *[qa(i) for i in range(2, 12)]])
    with pytest.raises(UsageError) as refused:
        train(together, data)
    assert str(refused.value).startswith("1 example (the first: data.jsonl line 2, messages[0].content[1]) hold images")
    assert f"Together does not train {MODEL} on images" in str(refused.value)
    assert "Qwen/Qwen3-VL-8B-Instruct" in (refused.value.hint or "")
    assert together.sent() == []  # nothing uploaded, no job


def test_reasoning_goes_as_it_is_to_a_model_that_reasons(write_jsonl: Callable[..., Path]) -> None:
    together = Together(supports_reasoning=True)
    data = write_jsonl([thinking(i) for i in range(12)])
    body = train(together, data)
    assert "multimodal_params" not in body
    sent = [json.loads(line) for line in together.uploaded["file-1"].splitlines()]
    assert sent[3]["messages"][1]["reasoning_content"] == "3 and 3 make 6."  # the field Together's docs name


def test_reasoning_on_a_model_that_doesnt_reason_is_refused_before_anything_is_sent(
    write_jsonl: Callable[..., Path],
) -> None:
    together = Together(supports_reasoning=False)
    with pytest.raises(UsageError, match=f"carry reasoning, and Together does not train {MODEL} on reasoning"):
        train(together, write_jsonl([thinking(i) for i in range(12)]))
    assert together.sent() == []


def test_reasoning_before_the_last_answer_is_refused_by_check_and_by_the_backend_alike(
    write_jsonl: Callable[..., Path],
) -> None:
    together = Together(supports_reasoning=True)
    data = write_jsonl([*[thinking(i) for i in range(4)], two_turns(4), *[thinking(i) for i in range(5, 12)]])
    # `check --model` on a Together name flags the line and message (an error), so train's check refuses it first
    report = check_file(data, options=CheckOptions(model=MODEL, workers=1))
    (flag,) = [d for d in report.diagnostics if d.code == "FT321"]
    assert (flag.line, flag.path, flag.severity.value) == (5, "messages[1]", "error")
    assert "would not be trained on Together" in flag.message
    with pytest.raises(FtcliError, match=r"line 5: FT321 messages\[1\] carries reasoning"):
        train(together, data)
    assert together.sent() == []
    # a file uploaded before (trained by its id, so not checked here) is read back, and the backend refuses it
    uploaded = together.backend().upload(data)
    with pytest.raises(UsageError) as refused:
        train(together, uploaded.file.id)
    assert str(refused.value).startswith("1 example (the first: line 5, messages[1]) carry reasoning on an answer")
    assert "Together trains a reasoning conversation's last answer only" in str(refused.value)
    assert together.sent() == [("POST", "/files/upload")]  # the upload above; no job


def test_an_uploaded_files_images_are_read_back_to_set_the_vision_option(write_jsonl: Callable[..., Path]) -> None:
    together = Together(supports_vision=True)
    backend = together.backend()
    uploaded = backend.upload(write_jsonl([looking(i) for i in range(12)]))
    body = train(together, uploaded.file.id)  # an id, with --method: the content is read back to tell what it holds
    assert ("GET", "/files/file-1/content") in together.requests
    assert body["multimodal_params"] == {"train_vision": True} and body["training_file"] == "file-1"
