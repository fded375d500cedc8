"""Training further on Together (`train --from-checkpoint`, `--model` naming a model a job made): the job's base
as `model` and the checkpoint as `from_checkpoint`, the request checked by Steady serving Together's own spec, and
the body against the spec's schema for `POST /fine-tunes` (its `from_checkpoint` field takes `JOB_ID`,
`OUTPUT_MODEL_NAME`, either with `:STEP`)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from ftcli.service.backends.together import TogetherBackend
from ftcli.service.backends.together_wire import create_body
from ftcli.service.errors import UsageError
from ftcli.service.jobs import JobRequest
from tests.contract.conftest import TOGETHER_SPEC, Exchanges
from tests.contract.test_together_contract import answers, together  # noqa: F401 (fixtures)

pytestmark = pytest.mark.contract
JOB = "ft-01234567890123456789"


@cache
def _create_schema() -> dict[str, Any]:
    """The schema of `POST /fine-tunes`' body in Together's spec, its references resolved against the spec."""
    import yaml

    spec = yaml.safe_load(TOGETHER_SPEC.read_text(encoding="utf-8"))
    body = spec["paths"]["/fine-tunes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # A gap in the spec: `train_on_inputs` is `oneOf: [boolean, "auto"]` beside a `type: boolean` that rules out
    # its own default "auto" (Steady follows the oneOf). The oneOf is kept, and only here.
    del spec["components"]["schemas"]["TrainingMethodSFT"]["properties"]["train_on_inputs"]["type"]
    return {**body, "components": spec["components"]}


def _spec_problems(body: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_create_schema())
    return [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(body)]


@pytest.mark.parametrize("checkpoint", [JOB, f"{JOB}:10"])
def test_a_job_from_a_checkpoint_sends_its_base_and_from_checkpoint(
    together: TogetherBackend,  # noqa: F811
    exchanges: Exchanges,
    answers: dict[str, Any],  # noqa: F811
    checkpoint: str,
) -> None:
    request = JobRequest(model="", training_file="file-1", method="sft", from_checkpoint=checkpoint)
    started = together.start_from(request)
    parent = answers["GET /fine-tunes/{id}"]
    assert parent["url"].endswith(f"/fine-tunes/{JOB}")  # the checkpoint's job, looked up (`:STEP` left off)
    assert started.model == parent["json"].get("model", "") and started.from_checkpoint == checkpoint
    body = create_body(started)
    assert body["from_checkpoint"] == checkpoint and body["model"] == started.model
    assert _spec_problems(body) == []
    together.create_job(started)  # Steady marks the request valid against the spec (the fixture asserts it)
    assert "POST /fine-tunes" in exchanges.paths()


def test_the_spec_takes_from_checkpoint_and_the_schema_check_bites() -> None:
    body = create_body(JobRequest(model="m", training_file="f", from_checkpoint=f"{JOB}:10"))
    assert _spec_problems(body) == []
    assert _spec_problems({**body, "from_checkpoint": 10})  # a number is not the spec's string: the check sees it
    assert _spec_problems({key: value for key, value in body.items() if key != "model"})  # model is required


def test_from_checkpoint_is_not_given_twice() -> None:
    request = JobRequest(model="m", training_file="f", from_checkpoint=JOB,
                         extra_hyperparameters={"from_checkpoint": "ft-other"})  # fmt: skip
    with pytest.raises(UsageError, match="from_checkpoint"):
        create_body(request)
