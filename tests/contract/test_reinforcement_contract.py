"""A reinforcement job's request body (issue 25) against OpenAI's spec served by Steady: `method.reinforcement` with
the grader and OpenAI's RFT hyperparameters is a valid `POST /fine_tuning/jobs` (the `client` fixture refuses any
request the spec doesn't match)."""

from __future__ import annotations

import pytest
from openai.types.fine_tuning import FineTuningJob

from ftcli.service import jobs
from ftcli.service.jobs import JobRequest

pytestmark = pytest.mark.contract

# (a multi grader is left out: the spec's GraderMulti has one grader under `graders`, its own example a list, and
# OpenAI's guide and API a map of named graders, which ftcli sends: Steady would judge the spec's reading)
GRADERS = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
     "operation": "eq"},
    {"type": "score_model", "name": "judged", "model": "gpt-4o-2024-08-06", "range": [0, 1],
     "input": [{"role": "user", "content": "Score {{sample.output_text}} against {{item.answer}}."}],
     "sampling_params": {"temperature": 0.2, "seed": 7}},
    {"type": "python", "name": "code", "source": "def grade(sample, item):\n    return 1.0\n"},
]  # fmt: skip


@pytest.mark.parametrize("grader", GRADERS, ids=["string_check", "score_model", "python"])
def test_a_reinforcement_job_request_is_valid(client, exchanges, grader: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    request = JobRequest(
        model="o4-mini-2025-04-16",
        training_file="file-abc",
        validation_file="file-def",
        method="reinforcement",
        n_epochs=2,
        grader=grader,
        extra_hyperparameters={
            "eval_interval": 5,
            "eval_samples": 2,
            "compute_multiplier": 1.5,
            "reasoning_effort": "medium",
        },  # fmt: skip
    )
    job = jobs.create_job(client, request)
    assert isinstance(job, FineTuningJob)
    assert exchanges.paths() == ["POST /fine_tuning/jobs"]
