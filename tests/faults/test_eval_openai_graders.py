"""`ftcli eval --grader-file` (issue 25): OpenAI graders score each answer through the engine reinforcement training
uses, beside ftcli's own graders, the case's record as `item` and the answer as `sample`; a score_model's judge is a
chat completion by the grader's model through the eval's client (cached like answers); a python grader runs in the
sandbox; a grader that fails on one answer scores 0 and is named with its line. Against a scripted chat backend
(httpx2.MockTransport), and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from ftcli.data.eval.cases import read_cases
from ftcli.data.eval.graders import grader as builtin
from ftcli.data.graders.spec import parse_grader
from ftcli.service.errors import UsageError
from ftcli.service.eval_run import ModelSpec, OpenAIGrader, run_eval
from tests.faults.test_eval_service import Backend

pytest.importorskip("sacrebleu", reason="the eval extra (scripts/test installs it)")

QUESTIONS = {"What is 2 plus 2?": "4", "What is 3 plus 3?": "6", "What is 4 plus 4?": "8", "What is 5 plus 5?": "10"}
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}  # fmt: skip
JUDGED = {
    "type": "score_model",
    "name": "judged",
    "model": "judge-model",
    "input": [{"role": "user", "content": "Is {{sample.output_text}} the answer {{item.answer}}? Score 0 to 1."}],
    "sampling_params": {"temperature": 0.3, "seed": 7},
}
PYTHON = {
    "type": "python",
    "name": "close",
    "source": "def grade(sample, item):\n    return 1.0 if sample['output_text'].strip() == item['answer'] else 0.25\n",
}


def prompts(tmp_path: Path, *, drop_answer_at: int | None = None, name: str = "rft.jsonl") -> Path:
    """RFT records: the question as the prompt, the answer as a field for the grader (one line lacking it)."""
    records = [{"messages": [{"role": "user", "content": q}], "answer": a} for q, a in QUESTIONS.items()]
    if drop_answer_at is not None:
        del records[drop_answer_at]["answer"]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


class Judging(Backend):
    """The evaluated models' answers from a table; the judge model scores 1 when the answer is the item's answer."""

    def __init__(self, answers: dict[str, dict[str, str]]) -> None:
        super().__init__(answers)
        self.judged: list[dict[str, Any]] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body["model"] != "judge-model":
            return super().handle(request)
        self.judged.append(body)
        text = body["messages"][-1]["content"]
        answer, wanted = text.split("Is ")[1].split(" the answer ")[0], text.split(" the answer ")[1].split("?")[0]
        verdict = json.dumps({"result": 1 if answer == wanted else 0})
        choice = {"index": 0, "message": {"role": "assistant", "content": verdict}, "finish_reason": "stop"}
        return httpx2.Response(200, json={"id": "j", "object": "chat.completion", "created": 0,
                                          "model": "judge-model", "choices": [choice]})  # fmt: skip


def evaluate(path: Path, backend: Backend, models: list[str], tmp_path: Path, *graders: dict[str, Any],
             builtins: tuple[str, ...] = (), **kwargs: Any) -> Any:  # fmt: skip
    cases, problems = read_cases(path, prompts=True)
    definitions = [OpenAIGrader(g["name"], parse_grader(g)) for g in graders]
    return run_eval(cases, problems, [ModelSpec(m, m) for m in models], [builtin(n) for n in builtins],
                    data=str(path), client_for=backend.client_for, cache_folder=tmp_path / "cache",
                    openai_graders=definitions, **kwargs)  # fmt: skip


def test_openai_graders_score_prompt_records_beside_ftclis_own(tmp_path: Path) -> None:
    half = dict(list(QUESTIONS.items())[:2])
    backend = Judging({"right": QUESTIONS, "half": half})
    path = prompts(tmp_path)
    report = evaluate(path, backend, ["right", "half"], tmp_path, EXACT, JUDGED, PYTHON, builtins=("normalised-exact",),
                      thresholds={"exact": 0.9})  # fmt: skip
    assert report.graders == ["normalised-exact", "exact", "judged", "close"]
    right, halved = report.models
    assert right.scores["exact"] == [1.0] * 4 and halved.scores["exact"] == [1.0, 1.0, 0.0, 0.0]
    assert halved.scores["judged"] == [1.0, 1.0, 0.0, 0.0] and halved.scores["close"] == [1.0, 1.0, 0.25, 0.25]
    assert right.scores["normalised-exact"] == [None] * 4  # a prompt record has no reference to compare with
    assert right.results["exact"].summary.mean == 1.0 and halved.results["exact"].summary.mean == 0.5
    assert halved.results["exact"].summary.low is not None  # an interval, as ftcli's own graders get
    versus = halved.results["exact"].versus_first
    assert versus is not None and (versus.wins, versus.ties, versus.losses) == (0, 2, 2)
    assert report.failures() == ["half: exact 0.5000 < 0.9"] and report.exit_code == 1
    document = report.to_dict()
    assert document["models"][1]["graders"]["judged"]["mean"] == 0.5 and "grader_errors" not in document["models"][0]

    # the judge is the grader's model, through the eval's client, with the grader's sampling params; the two models'
    # equal answers are judged once (the verdict is cached)
    assert len(backend.judged) == 6 and {b["model"] for b in backend.judged} == {"judge-model"}
    assert all(b["temperature"] == 0.3 and b["seed"] == 7 for b in backend.judged)
    assert all(b["response_format"]["type"] == "json_schema" for b in backend.judged)
    again = Judging({"right": QUESTIONS, "half": half})
    evaluate(path, again, ["right", "half"], tmp_path, EXACT, JUDGED)
    assert again.requests == [] and again.judged == []  # answers and verdicts both cached


def test_a_grader_that_fails_on_one_answer_scores_zero_and_names_the_line(tmp_path: Path) -> None:
    backend = Backend({"right": QUESTIONS})
    report = evaluate(prompts(tmp_path, drop_answer_at=2), backend, ["right"], tmp_path, EXACT)
    (model,) = report.models
    assert model.scores["exact"] == [1.0, 1.0, 0.0, 1.0]
    (failure,) = model.grader_errors
    assert (failure.grader, failure.line) == ("exact", 3) and "answer" in failure.message
    assert report.to_dict()["models"][0]["grader_errors"] == [failure.to_dict()]


def test_grader_names_must_be_distinct_and_a_chat_file_keeps_its_references(tmp_path: Path) -> None:
    backend = Backend({"right": QUESTIONS})
    with pytest.raises(UsageError, match="two graders are named chrf"):
        evaluate(prompts(tmp_path), backend, ["right"], tmp_path, {**EXACT, "name": "chrf"}, builtins=("chrf",))
    chat = tmp_path / "chat.jsonl"
    answered = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "answer": a}
                for q, a in QUESTIONS.items()]  # fmt: skip
    chat.write_text("".join(json.dumps(record) + "\n" for record in answered), encoding="utf-8")
    report = evaluate(chat, backend, ["right"], tmp_path, EXACT, builtins=("normalised-exact",))
    assert report.models[0].scores == {"normalised-exact": [1.0] * 4, "exact": [1.0] * 4}


def test_eval_grader_file_from_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    backend = Backend({"m": dict(list(QUESTIONS.items())[:3])})
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: backend.client_for(ModelSpec("m", "m"))[0])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCLI_DATA_DIR", str(tmp_path / "data"))
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(EXACT), encoding="utf-8")
    data = prompts(tmp_path)
    args = ["--json", "eval", str(data), "--model", "m", "--grader-file", str(grader), "--no-publish"]
    passed = CliRunner().invoke(app, args)
    assert passed.exit_code == 0, passed.output
    document = json.loads(passed.stdout)
    assert document["graders"] == ["exact"] and document["models"][0]["graders"]["exact"]["mean"] == 0.75
    shown = CliRunner().invoke(app, args[1:] + ["--out", str(tmp_path / "out")])  # the text view and --out files
    assert shown.exit_code == 0 and "exact" in shown.stdout, shown.output
    assert "exact" in (tmp_path / "out" / "cases.csv").read_text().splitlines()[0]
    lacking = prompts(tmp_path, drop_answer_at=1, name="lacking.jsonl")
    warned = CliRunner().invoke(app, [args[1], str(lacking), *args[3:]])
    assert warned.exit_code == 0 and f"{lacking}:2: exact: the item has no field 'answer'" in warned.stderr
    gated = CliRunner().invoke(app, [*args, "--min-score", "exact=0.8"])
    assert gated.exit_code == 1 and json.loads(gated.stdout)["failures"] == ["m: exact 0.7500 < 0.8"]
    grader.write_text(json.dumps({**EXACT, "operation": "equals"}), encoding="utf-8")
    invalid = CliRunner().invoke(app, args)
    assert invalid.exit_code == 2 and f"--grader-file {grader}: grader.operation" in invalid.stderr
