"""OpenAI's grader endpoints (`/v1/fine_tuning/alpha/graders/validate` and `/run`): the spec's ValidateGraderRequest,
RunGraderRequest and their responses. The grader itself is a JSON object here, judged by the engine's
parse_grader (data/graders/spec.py), which names the field that is wrong."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictStr

from ftcli.server.protocol.common import Request, Response

MAX_MODEL_SAMPLE = 200_000  # characters of the answer /run grades (a long completion, with room to spare)


class ValidateGraderRequest(Request):
    grader: dict[str, Any]


class RunGraderRequest(Request):
    grader: dict[str, Any]
    model_sample: Annotated[
        StrictStr, Field(max_length=MAX_MODEL_SAMPLE)
    ]  # the answer: `sample.output_text`, and `output_json` where it is valid JSON
    item: Any = None  # the dataset record (`item`): an object


class ValidateGraderResponse(Response):
    grader: dict[str, Any]


class RunGraderErrors(Response):
    """Which kinds of failure happened (the spec's names), with the details ftcli has for them."""

    formula_parse_error: bool = False
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    invalid_variable_error: bool = False
    other_error: bool = False
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    model_grader_server_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_server_error_details: str | None = None


class RunGraderMetadata(Response):
    name: str
    type: str
    errors: RunGraderErrors
    execution_time: float  # seconds
    scores: dict[str, Any] = Field(default_factory=dict)
    token_usage: int | None = None  # the judges' tokens, prompt and completion together
    sampled_model_name: str | None = None  # the judge model a model grader asked


class RunGraderResponse(Response):
    reward: float
    metadata: RunGraderMetadata
    sub_rewards: dict[str, Any] = Field(default_factory=dict)
    model_grader_token_usage_per_model: dict[str, Any] = Field(default_factory=dict)
