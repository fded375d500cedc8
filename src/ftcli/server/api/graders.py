"""OpenAI's grader endpoints: `POST /v1/fine_tuning/alpha/graders/validate` checks a grader definition and gives it
back; `/run` grades one model sample against one item, as an RFT job's step would, and reports the reward with
OpenAI's error flags. Model graders are judged by a model this server serves (generated in-process, as a chat
completion would be); python graders run in the sandbox (data/graders/python_sandbox.py)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ftcli.data.graders.engine import ERROR_KINDS, GradeResult, JudgeReply, Sample, grade
from ftcli.data.graders.python_sandbox import run_python_grader
from ftcli.data.graders.spec import Grader, GraderError, grader_json, parse_grader
from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.chat import ChatLimits
from ftcli.server.api.errors import ApiError
from ftcli.server.bases import UnknownBase
from ftcli.server.judge import LocalJudge
from ftcli.server.limits import ChatSlots
from ftcli.server.protocol.graders import (
    RunGraderErrors,
    RunGraderMetadata,
    RunGraderRequest,
    RunGraderResponse,
    ValidateGraderRequest,
    ValidateGraderResponse,
)

router = APIRouter(prefix="/fine_tuning/alpha/graders")
THINK_CLOSE = "</think>"


@router.post("/validate", openapi_extra=documented_body(ValidateGraderRequest))
async def validate_grader(request: Request) -> ValidateGraderResponse:
    body = await read_request(request, ValidateGraderRequest)
    return ValidateGraderResponse(grader=grader_json(await run_in_threadpool(_grader, body.grader)))


@router.post("/run", openapi_extra=documented_body(RunGraderRequest))
async def run_grader(request: Request) -> RunGraderResponse:
    body = await read_request(request, RunGraderRequest)
    grader = await run_in_threadpool(_grader, body.grader)  # checking a large grader must not stall the event loop
    if body.item is not None and not isinstance(body.item, dict):
        raise ApiError(400, f"item: the dataset item is a JSON object, got {type(body.item).__name__}", param="item")
    item: dict[str, Any] = body.item or {}
    judge = _ServerJudge(request)
    slots: ChatSlots = request.app.state.chat_slots
    await slots.acquire()  # a judge or a sandbox holds a worker thread for seconds: only a few at once
    try:
        started = time.monotonic()
        result = await run_in_threadpool(
            grade, grader, item, Sample.of_text(body.model_sample), judge=judge, python=run_python_grader
        )
        elapsed = time.monotonic() - started
    finally:
        slots.release()
    return _response(grader, result, elapsed)


def _grader(definition: dict[str, Any]) -> Grader:
    try:
        return parse_grader(definition, where="grader")
    except GraderError as exc:
        path, _, _rest = exc.message.partition(": ")
        raise ApiError(400, exc.message, param=path if path.startswith("grader") else "grader") from None


def _response(grader: Grader, result: GradeResult, elapsed: float) -> RunGraderResponse:
    flags: dict[str, Any] = {kind: kind in result.kinds for kind in ERROR_KINDS}
    for failure in result.failures:  # the details of the first failure of each kind
        detail = {
            "python_grader_server_error": "python_grader_server_error_type",
            "python_grader_runtime_error": "python_grader_runtime_error_details",
            "model_grader_server_error": "model_grader_server_error_details",
        }.get(failure.kind)
        if detail is not None and flags.get(detail) is None:
            flags[detail] = f"{failure.grader}: {failure.message}"[:2000]
    usage = {
        model: {
            "prompt_tokens": used.prompt_tokens,
            "completion_tokens": used.completion_tokens,
            "total_tokens": used.total_tokens,
            "cached_tokens": 0,
        }
        for model, used in result.token_usage.items()
    }
    metadata = RunGraderMetadata(
        name=grader.name,
        type=grader.type,
        errors=RunGraderErrors.model_validate(flags),
        execution_time=elapsed,
        token_usage=sum(used.total_tokens for used in result.token_usage.values()) if usage else None,
        sampled_model_name=result.judge_model,
    )
    return RunGraderResponse(
        reward=result.reward,
        metadata=metadata,
        sub_rewards=dict(result.sub_rewards),
        model_grader_token_usage_per_model=usage,
    )


class _ServerJudge:
    """engine.Judge on this server: a model it serves answers (the chat endpoint's model cache and answer limit);
    a model it doesn't serve is that sample's error, naming the model."""

    def __init__(self, request: Request) -> None:
        self.local = LocalJudge(request.app.state.store)
        self.local.models = request.app.state.models  # one model in memory, shared with chat completions
        self.limits: ChatLimits = request.app.state.chat_limits

    def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> JudgeReply:
        for index, message in enumerate(messages):
            if not isinstance(message.get("content"), str):
                raise GraderError(
                    f"input[{index}]: this server's models read text only, not images or audio (the local backend "
                    "has no vision or audio models)"
                )
        wanted = sampling.get("max_completion_tokens") or self.limits.default_max_tokens
        bounded = {**sampling, "max_completion_tokens": min(int(wanted), self.limits.max_tokens)}
        try:
            reply = self.local(model, messages, bounded)
        except UnknownBase as exc:
            raise GraderError(f"the judge model {model!r} is not served by this server: {exc}") from None
        # a thinking model's reasoning is not its answer (its numbers would read as scores)
        answer = reply.text.rsplit(THINK_CLOSE, 1)[-1] if THINK_CLOSE in reply.text else reply.text
        return JudgeReply(answer.strip(), reply.prompt_tokens, reply.completion_tokens)
