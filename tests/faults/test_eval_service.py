"""`ftcli eval`'s service against a scripted chat backend (httpx2.MockTransport): every model answers every case,
answers are cached per model and settings (a rerun makes no request; an added model asks only for itself), a
failure keeps what was answered, and the report's numbers, gate and documents follow from the answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ftcli.data.eval.cases import read_cases
from ftcli.data.eval.graders import grader
from ftcli.service.client import make_client
from ftcli.service.errors import BackendError, UsageError
from ftcli.service.eval_run import ModelSpec, Sampling, parse_model, run_eval
from ftcli.service.settings import Settings

pytest.importorskip("sacrebleu", reason="the eval extra (scripts/test installs it)")

QA = [
    ("What is the capital of Zorbia?", "Quellan."),
    ("Who wrote the Blue Ledger?", "Amra Tolve."),
    ("How long is a Zorbian week?", "Nine days."),
    ("劳动合同的试用期最长多久？", "试用期最长不得超过六个月。"),
]


class Backend:
    """Chat completions answered from a table per model; every request noted."""

    def __init__(self, answers: dict[str, dict[str, str]], fail_after: int | None = None) -> None:
        self.answers, self.requests, self.fail_after = answers, [], fail_after

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append((body["model"], body["messages"][-1]["content"], body.get("temperature")))
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return httpx2.Response(503, json={"error": {"message": "overloaded"}})
        text = self.answers[body["model"]].get(body["messages"][-1]["content"], "I don't know.")
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        completion = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
        return httpx2.Response(200, json=completion)

    def client_for(self, _spec: ModelSpec) -> Any:
        http = httpx2.Client(transport=httpx2.MockTransport(self.handle))
        return make_client(
            Settings(kind="compatible", base_url="http://fake/v1"), max_retries=0, http_client=http
        ), "b1"


def data(tmp_path: Path) -> Path:
    path = tmp_path / "golden.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for q, a in QA]  # fmt: skip
    path.write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n", encoding="utf-8")
    return path


def evaluate(path: Path, backend: Backend, models: list[str], tmp_path: Path, **kwargs: Any) -> Any:
    cases, problems = read_cases(path)
    graders = [grader(name) for name in ("normalised-exact", "chrf")]
    specs = [ModelSpec(m, m) for m in models]
    return run_eval(cases, problems, specs, graders, data=str(path), client_for=backend.client_for,
                    cache_folder=tmp_path / "cache", **kwargs)  # fmt: skip


def test_models_are_compared_and_the_cache_spares_a_rerun(tmp_path: Path) -> None:
    tuned = {q: a for q, a in QA}
    backend = Backend({"old": tuned, "new": {**tuned, QA[2][0]: "Nine days, I think."}, "base": {}})
    path = data(tmp_path)
    report = evaluate(path, backend, ["old", "new"], tmp_path)
    assert len(backend.requests) == 8 and all(t == 0.0 for *_, t in backend.requests)  # greedy by default
    assert [p.line for p in report.problems] == [2]
    old, new = report.models
    assert old.results["normalised-exact"].summary.mean == 1.0 and new.results["normalised-exact"].summary.mean == 0.75
    versus = new.results["normalised-exact"].versus_first
    assert versus is not None and (versus.wins, versus.ties, versus.losses) == (0, 3, 1)
    assert report.worst(new, "chrf")[0] == 2  # the changed answer scores lowest
    document = report.to_dict()
    assert document["cases"] == 4 and document["models"][1]["graders"]["chrf"]["versus_first"]["losses"] == 1
    assert len(report.rows()) == 8 and report.rows()[0]["line"] == 1

    again = evaluate(path, backend, ["old", "new", "base"], tmp_path)
    assert len(backend.requests) == 12 and [m.asked for m in again.models] == [0, 0, 4]  # only the added model
    assert again.models[2].results["chrf"].summary.mean < 0.2
    evaluate(path, backend, ["old"], tmp_path, sampling=Sampling(temperature=0.7))
    assert len(backend.requests) == 16  # other settings, other answers: asked again


def test_min_score_gates_each_model(tmp_path: Path) -> None:
    backend = Backend({"good": dict(QA), "bad": {}})
    path = data(tmp_path)
    passing = evaluate(path, backend, ["good"], tmp_path, thresholds={"chrf": 0.9})
    assert passing.exit_code == 0 and passing.failures() == []
    failing = evaluate(path, backend, ["good", "bad"], tmp_path, thresholds={"chrf": 0.9, "normalised-exact": 0.5})
    assert failing.exit_code == 1 and [f.split(":")[0] for f in failing.failures()] == ["bad", "bad"]
    with pytest.raises(UsageError, match="not among the graders"):
        evaluate(path, backend, ["good"], tmp_path, thresholds={"rouge-l": 0.5})


def test_a_failure_keeps_what_was_answered(tmp_path: Path) -> None:
    path = data(tmp_path)
    failing = Backend({"m": dict(QA)}, fail_after=2)
    with pytest.raises(BackendError):
        evaluate(path, failing, ["m"], tmp_path, parallel=1)
    healthy = Backend({"m": dict(QA)})
    report = evaluate(path, healthy, ["m"], tmp_path)
    assert report.models[0].asked == 2 and len(healthy.requests) == 2  # the two answered before are not asked again


def test_a_model_names_its_profile() -> None:
    assert parse_model("local:ft:ftcli/tiny:local:zorbia:ftjob-1", {"local"}) == ModelSpec(
        "local:ft:ftcli/tiny:local:zorbia:ftjob-1", "ft:ftcli/tiny:local:zorbia:ftjob-1", "local"
    )
    assert parse_model("ft:gpt-4.1-mini-2025-04-14:acme::abc", {"local"}).profile is None  # `ft:` is never a profile
    assert parse_model("together:acme/legal", set()).profile == "together"
    assert parse_model("HuggingFaceTB/SmolLM2-135M-Instruct", {"local"}).profile is None


class Judging(Backend):
    """Answers for the evaluated model, and a scripted judge: it prefers whichever answer holds the reference's
    words (`fair`), or always says "1" (`biased`), noting which answer it saw first."""

    def __init__(self, answers: dict[str, dict[str, str]], *, biased: bool = False) -> None:
        super().__init__(answers)
        self.biased = biased
        self.judged: list[tuple[str, str]] = []  # (answer 1, answer 2) as the judge saw them
        self.rubric_shown: list[bool] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body["model"] != "judge":
            return super().handle(request)
        text = body["messages"][-1]["content"]
        first = text.split("Answer 1:\n")[1].split("\n\nAnswer 2:")[0]
        second = text.split("Answer 2:\n")[1].split("\n\nWhich answer")[0]
        self.judged.append((first, second))
        assert "Conversation:\nuser:" in text
        self.rubric_shown.append("Rubric words." in text)
        if self.biased:
            verdict = "1"
        elif first == second or ("I don't know" not in first and "I don't know" not in second):
            verdict = "tie"
        else:
            verdict = "2" if "I don't know" in first else "1"
        choice = {"index": 0, "message": {"role": "assistant", "content": verdict}, "finish_reason": "stop"}
        return httpx2.Response(200, json={"id": "j", "object": "chat.completion", "created": 0, "model": "judge",
                                          "choices": [choice]})  # fmt: skip


def test_the_judge_is_asked_both_ways_and_its_position_bias_cancels(tmp_path: Path) -> None:
    from ftcli.service.eval_run import Judge

    path = data(tmp_path)
    half = dict(QA[:2])  # knows two answers, says "I don't know." to the others
    fair = Judging({"half": half})
    report = evaluate(path, fair, ["half"], tmp_path, judge=Judge(ModelSpec("judge", "judge"), "Rubric words."))
    seen = set(fair.judged)
    for question, reference in QA:
        answer = half.get(question, "I don't know.")
        assert {(answer, reference), (reference, answer)} <= seen  # both orders (one prompt when they're equal)
    assert len(fair.judged) == 2 * len(QA) - 2 and all(fair.rubric_shown)
    assert report.models[0].scores["judge"] == [0.5, 0.5, 0.0, 0.0]  # as good as the reference, then worse
    assert report.models[0].results["judge"].summary.mean == 0.25
    biased = Judging({"half": half}, biased=True)
    again = evaluate(path, biased, ["half"], tmp_path / "other", judge=Judge(ModelSpec("judge", "judge")))
    assert again.models[0].scores["judge"] == [0.5] * len(QA)  # "always the first" favours no one
    assert len(biased.judged) == 2 * len(QA) - 2 and not any(biased.rubric_shown)
    cached = Judging({"half": half}, biased=True)
    evaluate(path, cached, ["half"], tmp_path / "other", judge=Judge(ModelSpec("judge", "judge")))
    assert cached.judged == [] and cached.requests == []  # answers and verdicts both cached
