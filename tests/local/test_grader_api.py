"""`ftcli serve`'s grader endpoints in-process: /validate gives a valid grader back and refuses an invalid one naming
the field; /run grades one sample with OpenAI's error flags, its model graders judged by a model the server serves
(ftcli/tiny, its answer scripted where the test needs a known one), its python graders in the sandbox; every
answer validates against OpenAI's spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server import inference  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

pytestmark = [pytest.mark.local]
RUN, VALIDATE = "/v1/fine_tuning/alpha/graders/run", "/v1/fine_tuning/alpha/graders/validate"
CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path / "data"), base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def post(client: TestClient, path: str, body: Any) -> dict[str, Any]:
    response = client.post(path, json=body)
    exchange = Exchange("POST", path, response.status_code, "application/json", response.content)
    assert violations(exchange) == []
    answer: dict[str, Any] = response.json()
    answer["status"] = response.status_code
    return answer


def raised(answer: dict[str, Any]) -> set[str]:
    """The error flags that are set."""
    return {name for name, value in answer["metadata"]["errors"].items() if value is True}


def test_validate_gives_the_grader_back(client: TestClient) -> None:
    answer = post(client, VALIDATE, {"grader": CHECK})
    assert answer == {"grader": CHECK, "status": 200}


@pytest.mark.parametrize(
    ("grader", "param", "message"),
    [
        ({**CHECK, "operation": "contains"}, "grader.operation", "Input should be 'eq'"),
        ({**CHECK, "reference": "{{ref.label}}"}, "grader.reference", "namespace is item or sample"),
        (
            {"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "__import__('os')"},
            "grader.calculate_output",
            "unexpected character",
        ),
        ({"type": "python", "name": "p", "source": "def grade(:"}, "grader.source", "not valid Python"),
    ],
)
def test_an_invalid_grader_is_a_400_naming_the_field(
    client: TestClient, grader: dict[str, Any], param: str, message: str
) -> None:
    for path, body in ((VALIDATE, {"grader": grader}), (RUN, {"grader": grader, "model_sample": "x"})):
        answer = post(client, path, body)
        assert answer["status"] == 400 and answer["error"]["param"] == param
        assert message in answer["error"]["message"]


def test_run_reports_the_reward_and_no_errors(client: TestClient) -> None:
    answer = post(client, RUN, {"grader": CHECK, "model_sample": "Paris", "item": {"label": "Paris"}})
    assert answer["reward"] == 1.0 and raised(answer) == set()
    assert answer["metadata"]["name"] == "exact" and answer["metadata"]["type"] == "string_check"
    assert answer["metadata"]["token_usage"] is None and answer["model_grader_token_usage_per_model"] == {}


def test_a_missing_item_field_is_an_invalid_variable_error(client: TestClient) -> None:
    answer = post(client, RUN, {"grader": CHECK, "model_sample": "Paris", "item": {"answer": "Paris"}})
    assert answer["status"] == 200 and answer["reward"] == 0.0 and raised(answer) == {"invalid_variable_error"}


def test_an_item_that_is_not_an_object_is_refused(client: TestClient) -> None:
    answer = post(client, RUN, {"grader": CHECK, "model_sample": "x", "item": ["Paris"]})
    assert answer["status"] == 400 and answer["error"]["param"] == "item"


def test_multi_reports_each_sub_reward(client: TestClient) -> None:
    similar = {**CHECK, "type": "text_similarity", "name": "similar", "evaluation_metric": "fuzzy_match"}
    del similar["operation"]
    grader = {
        "type": "multi",
        "name": "both",
        "graders": {"exact": CHECK, "similar": similar},
        "calculate_output": "max(exact, similar)",
    }
    answer = post(client, RUN, {"grader": grader, "model_sample": "kitten", "item": {"label": "sitting"}})
    assert answer["sub_rewards"] == {"exact": 0.0, "similar": pytest.approx(8 / 13)}
    assert answer["reward"] == pytest.approx(8 / 13)


SCORE = {
    "type": "score_model",
    "name": "judge",
    "model": "ftcli/tiny",
    "input": [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "Reference: {{item.label}}\nAnswer: {{sample.output_text}}"}],
        }
    ],
    "range": [0, 1],
    "sampling_params": {"max_completions_tokens": 8, "temperature": 0},
}


def test_a_model_grader_is_judged_by_a_model_the_server_serves(
    client: TestClient, tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny model is loaded and asked (its prompt tokens counted); its random words are replaced by a scripted
    answer, so the reward is known."""
    assert tiny_base.is_dir()  # built once per session; the judge loads it
    asked: list[Any] = []

    def scripted(_loaded: Any, messages: Any, sampling: Any, *_args: Any, **_kwargs: Any) -> Iterator[str]:
        asked.append((messages, sampling))
        yield from ['{"result": ', "0.75}"]

    monkeypatch.setattr(inference, "generate_stream", scripted)
    answer = post(client, RUN, {"grader": SCORE, "model_sample": "Paris", "item": {"label": "Paris"}})
    assert answer["reward"] == 0.75 and raised(answer) == set()
    assert answer["metadata"]["sampled_model_name"] == "ftcli/tiny"
    usage = answer["model_grader_token_usage_per_model"]["ftcli/tiny"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
    assert answer["metadata"]["token_usage"] == usage["total_tokens"]
    messages, sampling = asked[0]
    assert messages[0]["content"].startswith("Reference: Paris\nAnswer: Paris")
    assert sampling.max_tokens == 8 and sampling.temperature == 0


def test_the_tiny_model_really_answers_as_a_judge(client: TestClient, tiny_base: Path) -> None:
    """Unscripted: whatever its random weights write is either a score in range or a parse error, never a 500."""
    assert tiny_base.is_dir()
    answer = post(client, RUN, {"grader": SCORE, "model_sample": "Paris", "item": {"label": "Paris"}})
    assert answer["status"] == 200 and 0.0 <= answer["reward"] <= 1.0
    assert raised(answer) <= {"model_grader_parse_error"}
    assert answer["model_grader_token_usage_per_model"]["ftcli/tiny"]["completion_tokens"] >= 1


def test_a_judge_model_the_server_does_not_have_is_that_samples_error(client: TestClient) -> None:
    answer = post(
        client, RUN, {"grader": {**SCORE, "model": "nobody/no-model"}, "model_sample": "x", "item": {"label": "y"}}
    )
    assert answer["status"] == 200 and answer["reward"] == 0.0
    assert raised(answer) == {"model_grader_server_error"}
    assert (
        "'nobody/no-model' is not served by this server"
        in answer["metadata"]["errors"]["model_grader_server_error_details"]
    )


def test_images_for_a_judge_are_refused_not_dropped(client: TestClient) -> None:
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    grader = {**SCORE, "input": [{"role": "user", "content": [*SCORE["input"][0]["content"], image]}]}  # type: ignore[index]
    answer = post(client, RUN, {"grader": grader, "model_sample": "x", "item": {"label": "y"}})
    assert raised(answer) == {"model_grader_server_error"}
    assert "text only" in answer["metadata"]["errors"]["model_grader_server_error_details"]


def test_python_graders_run_in_the_sandbox(client: TestClient) -> None:
    source = "def grade(sample, item):\n    return float(sample['output_json']['n'] == item['n'])\n"
    grader = {"type": "python", "name": "script", "source": source}
    answer = post(client, RUN, {"grader": grader, "model_sample": '{"n": 3}', "item": {"n": 3}})
    assert answer["reward"] == 1.0 and raised(answer) == set()
    failing = {**grader, "source": "def grade(sample, item):\n    return 1 / 0\n"}
    answer = post(client, RUN, {"grader": failing, "model_sample": "x", "item": {}})
    assert answer["reward"] == 0.0 and raised(answer) == {"python_grader_runtime_error"}
    assert "ZeroDivisionError" in answer["metadata"]["errors"]["python_grader_runtime_error_details"]


def test_a_model_sample_over_the_cap_is_a_400_naming_the_limit(client: TestClient) -> None:
    from ftcli.server.protocol.graders import MAX_MODEL_SAMPLE

    answer = post(client, RUN, {"grader": CHECK, "model_sample": "x" * (MAX_MODEL_SAMPLE + 1), "item": {"label": "x"}})
    assert answer["status"] == 400 and answer["error"]["param"] == "model_sample"
    assert str(MAX_MODEL_SAMPLE) in answer["error"]["message"]
    at_cap = post(client, RUN, {"grader": CHECK, "model_sample": "x" * MAX_MODEL_SAMPLE, "item": {"label": "x"}})
    assert at_cap["status"] == 200 and at_cap["reward"] == 0.0 and raised(at_cap) == set()


def test_a_template_over_the_cap_is_a_400_naming_the_limit(client: TestClient) -> None:
    from ftcli.data.graders.template import MAX_TEMPLATE_LENGTH

    grader = {**CHECK, "reference": "{{" * (MAX_TEMPLATE_LENGTH // 2 + 1)}  # unclosed braces: once quadratic
    for path, body in ((VALIDATE, {"grader": grader}), (RUN, {"grader": grader, "model_sample": "x"})):
        answer = post(client, path, body)
        assert answer["status"] == 400 and answer["error"]["param"] == "grader.reference"
        assert f"at most {MAX_TEMPLATE_LENGTH} characters" in answer["error"]["message"]
