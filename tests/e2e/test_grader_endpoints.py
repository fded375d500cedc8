"""OpenAI's grader endpoints on a real `ftcli serve`, called through the official SDK
(`client.fine_tuning.alpha.graders.validate / run`): each answer parses into the SDK's types, and every response,
the refusals included, validates against OpenAI's OpenAPI spec."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server
from tests.openai_spec import SPEC, RecordingTransport, violations

pytestmark = [pytest.mark.e2e, pytest.mark.local]

CHECK = {
    "type": "string_check",
    "name": "Example string check grader",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}
SIMILAR = {
    "type": "text_similarity",
    "name": "similar",
    "input": "{{sample.output_json.answer}}",
    "reference": "{{item.label}}",
    "evaluation_metric": "rouge_l",
}


@pytest.fixture
def recorded(server: Server) -> Iterator[tuple[openai.OpenAI, RecordingTransport]]:
    if not SPEC.exists():
        pytest.fail(f"{SPEC} is missing: tests need ../shared beside the repository")
    transport = RecordingTransport()
    with (
        httpx2.Client(transport=transport, timeout=120) as http,
        make_client(Settings(kind="compatible", base_url=server.url), http_client=http, max_retries=0) as sdk,
    ):
        yield sdk, transport


def test_the_sdk_validates_and_runs_graders_as_the_spec_says(
    recorded: tuple[openai.OpenAI, RecordingTransport],
) -> None:
    sdk, transport = recorded
    graders = sdk.fine_tuning.alpha.graders

    validated = graders.validate(grader=CHECK)  # type: ignore[arg-type]
    assert isinstance(validated, GraderValidateResponse)
    assert validated.grader is not None and validated.grader.model_dump(exclude_none=True) == CHECK

    ran = graders.run(grader=CHECK, model_sample="Paris", item={"label": "Paris"})  # type: ignore[arg-type]
    assert isinstance(ran, GraderRunResponse) and ran.reward == 1.0
    assert ran.metadata.type == "string_check" and not ran.metadata.errors.invalid_variable_error

    multi = {
        "type": "multi",
        "name": "both",
        "graders": {"exact": {**CHECK, "input": "{{sample.output_json.answer}}"}, "similar": SIMILAR},
        "calculate_output": "0.5 * exact + 0.5 * similar",
    }
    ran = graders.run(grader=multi, model_sample='{"answer": "Paris France"}', item={"label": "Paris"})  # type: ignore[arg-type]
    assert ran.sub_rewards == {"exact": 0.0, "similar": pytest.approx(2 / 3)}  # ROUGE-L F: P 1/2, R 1
    assert ran.reward == pytest.approx(1 / 3)

    missing = graders.run(grader=CHECK, model_sample="Paris", item={})  # type: ignore[arg-type]
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error

    with pytest.raises(openai.BadRequestError) as refused:
        graders.validate(grader={**CHECK, "operation": "contains"})  # type: ignore[arg-type]
    assert refused.value.body["param"] == "grader.operation"  # type: ignore[index]

    problems = [problem for exchange in transport.exchanges for problem in violations(exchange)]
    assert problems == []
    assert len(transport.exchanges) == 5
