"""chat --eval / --compare and status --results / --plot, through the CLI against the in-memory fake API."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli import context
from ftcli.cli.app import app
from ftcli.service.eval_run import score
from ftcli.service.results import decode_result_file, loss_from_csv
from tests.faults.fakeapi import FakeAPI, job_object

CSV = (
    "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
    "1,2.5,0.1,,\n2,1.75,0.3,2.0,0.2\n3,0.9,0.6,,\n"
)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCLI_DATA_DIR", str(tmp_path / "data"))
    return fake


def test_scores() -> None:
    assert score("Hello  World", "hello world") == (True, 1.0)
    exact, similarity = score("试用期不得超过六个月", "试用期不超过六个月")
    assert not exact and 0.8 < similarity < 1


def test_eval_scores_every_example(api: FakeAPI, tmp_path: Path) -> None:
    answers = {"q1": "试用期不得超过六个月。", "q2": "Something else entirely."}
    api.answer = lambda body: answers[body["messages"][-1]["content"]]
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": q},
                        {"role": "assistant", "content": "试用期不得超过六个月。"},
                    ]
                },
                ensure_ascii=False,
            )
            + "\n"
            for q in answers
        )
    )
    result = CliRunner().invoke(
        app,
        ["--json", "chat", "--model", "ft:x", "--eval", str(held_out), "--eval-output", str(tmp_path / "out.jsonl")],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["examples"], summary["exact_matches"]) == (2, 1) and summary["mean_similarity"] == 0.5
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["line"], r["exact"]) for r in rows] == [(1, True), (2, False)]
    asked = [body for body in api.requests if body[1].endswith("/chat/completions")]
    assert len(asked) == 2


def test_compare_answers_with_both_models(api: FakeAPI) -> None:
    api.answer = lambda body: f"answer from {body['model']}"
    result = CliRunner().invoke(app, ["--json", "chat", "--model", "ft:new", "--compare", "gpt-4o-mini", "hi"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row == {"prompt": "hi", "ft:new": "answer from ft:new", "gpt-4o-mini": "answer from gpt-4o-mini"}


def test_result_files_base64_or_plain() -> None:
    assert decode_result_file(base64.b64encode(CSV.encode())) == CSV
    assert decode_result_file(CSV.encode()) == CSV
    points = loss_from_csv(CSV)
    assert [(p.step, p.train_loss, p.valid_loss) for p in points] == [(1, 2.5, None), (2, 1.75, 2.0), (3, 0.9, None)]


def test_status_results_and_plot(api: FakeAPI, tmp_path: Path) -> None:
    api.jobs["ftjob-7"] = job_object("ftjob-7", status="succeeded", result_files=["file-res"])
    api.contents["file-res"] = base64.b64encode(CSV.encode())
    result = CliRunner().invoke(
        app, ["status", "ftjob-7", "--results", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "loss.png")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.csv").read_text() == CSV
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert "2.500 → 0.900" in result.stdout


def test_repl_system_multiline_save_reset(api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftcli.cli import chat as chat_command

    monkeypatch.setattr(chat_command, "interactive", lambda: True)
    api.answer = lambda body: "the answer"
    typed = "/system Be brief\nhello \\\nworld\n/save conv.jsonl\n/reset\nagain\n/exit\n"
    result = CliRunner().invoke(app, ["chat", "--model", "ft:x"], input=typed)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("the answer") == 2  # streamed, once per question
    first, second = api.chat_requests
    assert first["stream"] is True
    assert first["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "hello \nworld"},
    ]
    assert second["messages"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "again"}]
    saved = json.loads((tmp_path / "conv.jsonl").read_text())
    assert saved["messages"][-1] == {"role": "assistant", "content": "the answer"}


# -- chat --eval and golden answers on the one eval engine, data/eval (issue 24, point 4) --------------------------


def _example(question: str, answer: object, **assistant: object) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer, **assistant}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def test_chat_eval_scores_with_the_graders_of_ftcli_eval(api: FakeAPI, tmp_path: Path) -> None:
    from ftcli.data.eval.graders import GRADERS, Answer, Reference

    answers = {"q1": "hello world", "q2": "试用期不超过六个月"}
    api.answer = lambda body: answers[body["messages"][-1]["content"]]
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(_example("q1", "Hello, World!") + "\n" + _example("q2", "试用期不得超过六个月。") + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["--json", "chat", "-m", "ft:x", "--eval", str(held_out), "--eval-output", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["exact"] for row in rows] == [True, False]  # punctuation and case don't count, as in `ftcli eval`
    similarity = GRADERS["similarity"].score(Reference("试用期不得超过六个月。"), Answer("试用期不超过六个月"), {})
    assert similarity is not None and rows[1]["similarity"] == round(similarity, 4)
    summary = json.loads(result.stdout)
    assert summary["exact_matches"] == 1 and summary["mean_similarity"] == round((1 + rows[1]["similarity"]) / 2, 4)


@pytest.mark.parametrize(
    ("second_line", "says"),
    [
        ("{not json", ":2: not JSON"),
        (
            _example(
                "q2", None, tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
            ),
            ":2: the last assistant message has no text to compare against",
        ),  # fmt: skip
        (json.dumps({"messages": [{"role": "user", "content": "q2"}]}), ":2: FT204 no message has role 'assistant'"),
    ],
)
def test_chat_eval_refuses_a_file_with_a_line_it_cannot_score_before_asking(
    api: FakeAPI, tmp_path: Path, second_line: str, says: str
) -> None:
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(_example("q1", "a1") + "\n" + second_line + "\n")
    result = CliRunner().invoke(app, ["chat", "--model", "ft:x", "--eval", str(held_out)])
    assert result.exit_code == 2 and says in result.output, result.output
    assert api.chat_requests == []


def test_golden_prompts_are_read_by_the_eval_engine_and_a_bad_line_named(api: FakeAPI, tmp_path: Path) -> None:
    api.answer = lambda body: "recorded"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        _example("q1", "old answer") + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "q2"}]}) + "\n"
    )
    result = CliRunner().invoke(app, ["export", "--golden", str(prompts), "--model", "ft:x", "--out", "g.jsonl"])
    assert result.exit_code == 0, result.output
    recorded = [json.loads(line)["messages"] for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert recorded == [
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "recorded"}],  # up to the last user turn
        [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "recorded"}],
    ]
    prompts.write_text(_example("q1", "a1") + "\n" + json.dumps({"messages": [{"role": "system", "content": "s"}]}))
    asked = len(api.chat_requests)
    refused = CliRunner().invoke(app, ["export", "--golden", str(prompts), "--model", "ft:x", "--out", "h.jsonl"])
    assert refused.exit_code == 2 and "prompts.jsonl:2: not a chat example with a user message" in refused.output
    assert len(api.chat_requests) == asked and not (tmp_path / "h.jsonl").exists()
