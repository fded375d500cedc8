"""What the CLI writes for a person (issue 29): untrusted text never carries terminal control characters nor rich
markup; the eval CSV is safe to open in a spreadsheet; ids are never cut; `--json status --wait` interrupted is JSON;
`rules CODE`; every command's --help has examples and no `<bool>`."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli import context, output
from ftcli.cli.app import COMMANDS, EXAMPLES, app, load_command
from ftcli.render.jobs import checkpoints_table, job_details, jobs_table
from ftcli.render.models import models_table
from ftcli.render.terminal import SafeConsole, printable
from ftcli.service import jobs
from ftcli.service.models import ModelView
from tests.faults.fakeapi import FakeAPI, job_object

# An OSC that retitles the terminal, CSIs that clear the screen and colour, a C1 CSI, a DEL, and rich markup that
# would end a style that was never opened (a crash) or make a terminal hyperlink
HOSTILE = (
    "before \x1b]0;pwned title\x07 middle \x1b[2J\x1b[31mred\x1b[0m \x9b31m after\x7f [/oops] "
    "[link=https://evil.example]click[/link] end"
)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURVIVES = ("before", "pwned title", "middle", "red", "after", "[/oops]", "[link=https://evil.example]click[/link]")


def assert_clean(text: str) -> None:
    assert not CONTROL.search(text), repr(CONTROL.findall(text))
    assert "\x1b]8;" not in text  # no hyperlink escape made from the markup
    for part in SURVIVES:
        assert part in text, (part, text)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(context.AppContext, "client", lambda self, **_: fake.client())
    monkeypatch.setattr(jobs.time, "sleep", lambda _seconds: None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCLI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FTCLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "400")  # wide: a whole line of text stays one line
    for console in (output.stdout, output.stderr):  # consoles made now, at this width
        console.cache_clear()
    yield fake
    for console in (output.stdout, output.stderr):
        console.cache_clear()


def event(message: str, *, kind: str = "message", **data: Any) -> dict[str, Any]:
    return {
        "id": f"ftevent-{abs(hash(message))}",
        "object": "fine_tuning.job.event",
        "created_at": 1,
        "level": "info",
        "message": message,
        "type": kind,
        "data": data or None,
    }


def test_printable_removes_c0_del_and_c1_but_keeps_newline_and_tab() -> None:
    assert printable("a\x1b[31mb\x9bc\x7fd\x00e\rf\ng\th\x85i") == "a[31mbcdef\ng\thi"
    assert printable("plain, 中文, émoji 🙂") == "plain, 中文, émoji 🙂"
    assert printable("admin\u202e\u2066txt.exe\u2069") == "admintxt.exe"  # bidi overrides read text backwards


def test_a_job_event_reaches_the_terminal_without_control_characters(api: FakeAPI) -> None:
    api.jobs["ftjob-1"] = job_object("ftjob-1", status="running", error=None)
    api.events["ftjob-1"] = [event(HOSTILE)]
    shown = CliRunner().invoke(app, ["status", "ftjob-1", "--events"])
    assert shown.exit_code == 0, shown.output
    assert_clean(shown.stdout)
    api.statuses = iter(["succeeded"])
    followed = CliRunner().invoke(app, ["status", "ftjob-1", "--wait"])  # the live view prints each event
    assert followed.exit_code == 0, followed.output
    assert_clean(followed.stderr)
    exact = CliRunner().invoke(app, ["--json", "status", "ftjob-1", "--events"])
    assert "\x9b" not in exact.stdout and "\x7f" not in exact.stdout  # escaped by JSON, not dropped
    assert json.loads(exact.stdout)["events"][0]["message"] == HOSTILE


def test_a_backend_error_and_a_failed_jobs_message_are_cleaned_too(api: FakeAPI) -> None:
    api.jobs["ftjob-2"] = job_object("ftjob-2", status="failed", error={"code": "x", "message": HOSTILE, "param": None})
    result = CliRunner().invoke(app, ["status", "ftjob-2"])
    assert result.exit_code == 0, result.output
    assert_clean(result.stdout)


def test_an_eval_reference_and_answer_reach_the_terminal_clean_and_the_csv_is_spreadsheet_safe(
    api: FakeAPI, tmp_path: Path
) -> None:
    formulas = ['=HYPERLINK("https://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    numbers = ["-5", "+1.5e3", "-.25"]  # what a spreadsheet reads as numbers anyway: kept as written
    prompts = [f"q{i}" for i in range(len(formulas) + len(numbers) + 1)]
    references = [HOSTILE, *formulas, *numbers]
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": reference}]}
        for q, reference in zip(prompts, references, strict=True)
    ]
    (tmp_path / "held-out.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    api.answer = lambda body: "=1+1" if body["messages"][-1]["content"] == "q1" else HOSTILE
    args = ["eval", "held-out.jsonl", "-m", "ft:m", "-g", "exact", "--no-publish", "--out", "report"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "lowest exact" in result.stdout  # the table of worst cases, with the references, was shown
    assert_clean(result.stdout)

    with (tmp_path / "report" / "cases.csv").open(newline="", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    by_line = {row["line"]: row for row in rows}
    assert by_line["1"]["reference"] == HOSTILE  # the CSV keeps the data as it was
    for number, formula in enumerate(formulas, start=2):
        assert by_line[str(number)]["reference"] == "'" + formula
    for number, plain in enumerate(numbers, start=2 + len(formulas)):
        assert by_line[str(number)]["reference"] == plain
    assert by_line["2"]["answer"] == "'=1+1"
    assert {row["exact"] for row in rows} <= {"0.0", "1.0"}  # numbers stay numbers


def test_a_chat_answer_is_printed_without_control_characters_and_exact_with_json(api: FakeAPI) -> None:
    api.answer = lambda body: HOSTILE
    for args in (["chat", "-m", "m", "hi"], ["chat", "-m", "m", "--no-stream", "hi"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert_clean(result.stdout)
    exact = CliRunner().invoke(app, ["--json", "chat", "-m", "m", "hi"])
    assert json.loads(exact.stdout)["answer"] == HOSTILE


def test_json_status_wait_interrupted_is_a_json_error_on_stderr(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    api.jobs["ftjob-3"] = job_object("ftjob-3", status="running")

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.time, "sleep", interrupt)
    result = CliRunner().invoke(app, ["--json", "status", "ftjob-3", "--wait"])
    assert result.exit_code == 130
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert "interrupted" in error["message"] and error["hint"] == "ftcli status ftjob-3 --wait"
    plain = CliRunner().invoke(app, ["status", "ftjob-3", "--wait"])
    assert plain.exit_code == 130 and "Re-attach with `ftcli status ftjob-3 --wait`" in plain.stderr


def test_rules_shows_one_rule_by_code_or_name() -> None:
    shown = CliRunner().invoke(app, ["rules", "FT104"])
    assert shown.exit_code == 0, shown.output
    assert "FT104" in shown.stdout and "wrong-method-format" in shown.stdout and "error" in shown.stdout
    assert "does not match the training method" in shown.stdout and "docs/rules.md#ft1xx-record-schema" in shown.stdout
    for argv in (["--json", "rules", "ft104"], ["rules", "wrong-method-format", "--json"]):
        document = json.loads(CliRunner().invoke(app, argv).stdout)
        assert document["code"] == "FT104" and document["severity"] == "error" and document["group"] == "Record schema"
    personal = json.loads(CliRunner().invoke(app, ["--json", "rules", "FT501"]).stdout)
    assert personal["left_out_by"] == ["local-training"]
    unknown = CliRunner().invoke(app, ["rules", "FT999"])
    assert unknown.exit_code == 2 and "no rule 'FT999'" in unknown.stderr
    unknown_json = CliRunner().invoke(app, ["--json", "rules", "FT999"])
    assert unknown_json.exit_code == 2 and unknown_json.stdout == ""
    assert json.loads(unknown_json.stderr)["error"]["hint"].startswith("`ftcli rules`")


def _every_command() -> list[list[str]]:
    paths = []
    for name in COMMANDS:
        paths.append([name])
        paths += [[name, sub] for sub in getattr(load_command(name), "commands", {})]
    return paths


@pytest.mark.parametrize("path", _every_command(), ids=" ".join)
def test_every_commands_help_ends_with_examples_and_shows_no_bool(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and "--install-completion" not in result.stdout
    examples = result.stdout[result.stdout.index("Examples:") :]
    listed = EXAMPLES[" ".join(path)]
    assert listed and all(example in examples for example in listed)
    assert all(example.startswith("ftcli ") and " ".join(path) in example for example in listed)


# -- ids are never cut -------------------------------------------------------------------------------------------

JOB_ID = "ftjob-753f2a9c1e4b4d6f8a0b2c3d"
TUNED = "ft:HuggingFaceTB/SmolLM2-135M-Instruct:local:legal-assistant:ftjob-753f2a9c1e4b4d6f8a0b2c3d"
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
CHECKPOINT = TUNED + ":ckpt-step-1200"


def narrow(renderable: Any) -> str:
    """As ftcli's own consoles print on an 80-column terminal."""
    console = SafeConsole(width=80, soft_wrap=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def one_line_each(text: str, *names: str) -> None:
    lines = text.splitlines()
    for name in names:
        assert any(name in line for line in lines), (name, text)


def job(**extra: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "id": JOB_ID,
        "status": "succeeded",
        "model": BASE,
        "fine_tuned_model": TUNED,
        "trained_tokens": 1234567,
        "created_at": 1_700_000_000,
        "finished_at": 1_700_003_600,
        "training_file": "file-4b1c0a2e9f8d7c6b5a493827",
        "validation_file": None,
        "hyperparameters": None,
        "method": None,
        "error": None,
    }
    return SimpleNamespace(**(fields | extra))


def test_ids_and_model_names_stay_whole_on_one_line_at_80_columns() -> None:
    one_line_each(narrow(jobs_table([job(), job(id="ftjob-2", status="validating_files")])), JOB_ID, TUNED, BASE)
    assert "succeeded" in narrow(jobs_table([job()])) and "…" not in narrow(jobs_table([job()]))
    one_line_each(narrow(job_details(job())), JOB_ID, TUNED, BASE)
    metrics = SimpleNamespace(train_loss=0.5, valid_loss=None)
    checkpoint = SimpleNamespace(step_number=1200, fine_tuned_model_checkpoint=CHECKPOINT, metrics=metrics)
    one_line_each(narrow(checkpoints_table([checkpoint])), CHECKPOINT)
    model = ModelView(TUNED, "local", 1, BASE, True, None, None)
    one_line_each(narrow(models_table([model])), TUNED, BASE)


def test_models_lists_whole_ids_through_the_cli_at_80_columns(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for console in (output.stdout, output.stderr):
        console.cache_clear()
    api.models = [{"id": TUNED, "object": "model", "created": 1, "owned_by": "local"}]
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    one_line_each(result.stdout, TUNED)
