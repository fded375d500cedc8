"""Reinforcement (RFT) records in `check` (issue 25): messages that end with the prompt plus the fields a grader reads;
`--method reinforcement` judges them as such (a final answer is an error naming its line), and a grader given with
them is validated and every `{{item.FIELD}}` it reads is looked for in every record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.check.report import Report
from ftcli.data.errors import DataError
from ftcli.data.formats.openai import record_kind
from ftcli.data.rules.records import record_errors

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def prompt(i: int, **fields: Any) -> dict[str, Any]:
    """An RFT record: a developer message and the question; the answer is a field for the grader."""
    messages = [{"role": "developer", "content": "Answer with the number only."},
                {"role": "user", "content": f"What is {i} plus {i}?"}]  # fmt: skip
    return {"messages": messages, "answer": str(2 * i), **fields}


def check(path: Path, **options: Any) -> Report:
    return check_file(path, options=CheckOptions(workers=1, **options))


def found(report: Report) -> list[tuple[int | None, str, str | None]]:
    return [(d.line, d.code, d.path) for d in report.diagnostics]


def test_a_prompt_file_is_clean_under_reinforcement_and_its_fields_are_item_data(
    write_jsonl: Callable[..., Path],
) -> None:
    path = write_jsonl([prompt(i, meta={"id": i}, level="easy") for i in range(12)])
    report = check(path, method="reinforcement")
    assert report.method == "reinforcement" and report.examples == 12
    assert found(report) == []  # no FT101 for `answer`, `meta`, `level`; no FT204 for the missing answer
    assert report.estimate.cost_usd is None  # RFT is priced by training time, not by token
    assert record_kind(prompt(1)) == "chat" and record_kind(prompt(1), "reinforcement") == "reinforcement"


def test_a_final_assistant_answer_is_an_error_naming_its_line(write_jsonl: Callable[..., Path]) -> None:
    answered = prompt(3)
    answered["messages"].append({"role": "assistant", "content": "6"})
    tool_last = prompt(4)
    tool_last["messages"].append({"role": "tool", "content": "8", "tool_call_id": "c1"})
    path = write_jsonl([prompt(i) for i in range(10)] + [answered, tool_last])
    report = check(path, method="reinforcement")
    errors = [(d.line, d.code, d.path) for d in report.diagnostics if d.code == "FT140"]
    assert errors == [(11, "FT140", "messages[2]"), (12, "FT140", "messages[2]")]
    first = next(d for d in report.diagnostics if d.line == 11)
    assert "already has its answer" in first.message and first.fix and "--method sft" in first.fix.hint
    assert report.exit_code(strict=False) == 1
    assert [f.code for f in record_errors(answered, "reinforcement")] == ["FT140"]  # what convert refuses


def test_a_dpo_record_under_reinforcement_is_the_wrong_format(write_jsonl: Callable[..., Path]) -> None:
    dpo = {"input": {"messages": [{"role": "user", "content": "q"}]},
           "preferred_output": [{"role": "assistant", "content": "a"}],
           "non_preferred_output": [{"role": "assistant", "content": "b"}]}  # fmt: skip
    report = check(write_jsonl([prompt(i) for i in range(10)] + [dpo]), method="reinforcement")
    (mismatch,) = [d for d in report.diagnostics if d.code == "FT104"]
    assert mismatch.line == 11 and "--method reinforcement trains on prompt (RFT) records" in mismatch.message


def test_prompts_checked_as_sft_point_to_reinforcement(write_jsonl: Callable[..., Path]) -> None:
    report = check(write_jsonl([prompt(i) for i in range(10)]))
    assert report.method == "sft"
    no_answer = [d for d in report.diagnostics if d.code == "FT204"]
    assert len(no_answer) == 10 and all(d.fix and "--method reinforcement" in d.fix.hint for d in no_answer)


def test_every_field_the_grader_reads_is_looked_for_in_every_record(write_jsonl: Callable[..., Path]) -> None:
    nested = {**EXACT, "reference": "{{item.meta.id}} {{item.answer}}"}
    records = [prompt(i, meta={"id": i}) for i in range(10)]
    del records[3]["answer"]
    records[6]["meta"] = {}
    records.append({"messages": [{"role": "user", "content": "q"}]})  # lacks both
    train = write_jsonl(records)
    validation = write_jsonl([prompt(1), prompt(2, meta={"id": 2})], name="val.jsonl")
    report = check_file(
        train,
        validation=validation,
        options=CheckOptions(workers=1, grader=nested, grader_file="grader.json"),  # a grader: reinforcement
    )
    assert report.method == "reinforcement"
    missing = [(Path(d.file or "").name, d.line, d.path) for d in report.diagnostics if d.code == "FT141"]
    assert missing == [
        ("data.jsonl", 4, "answer"),
        ("data.jsonl", 7, "meta.id"),
        ("data.jsonl", 11, "answer"),
        ("data.jsonl", 11, "meta.id"),
        ("val.jsonl", 1, "meta.id"),
    ]
    assert "{{item.meta.id}}" in next(d.message for d in report.diagnostics if d.code == "FT141" and d.line == 7)


def test_an_invalid_grader_is_an_error_naming_its_json_path(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([prompt(i) for i in range(10)])
    report = check(path, grader={**EXACT, "operation": "equals"}, grader_file="grader.json")
    (invalid,) = [d for d in report.diagnostics if d.code == "FT142"]
    assert (invalid.file, invalid.line, invalid.path) == ("grader.json", None, "operation")
    assert "'eq'" in invalid.message and report.exit_code(strict=False) == 1
    not_object = check(path, grader=["not", "a", "grader"], grader_file="grader.json")
    assert [(d.code, d.path) for d in not_object.diagnostics] == [("FT142", None)]


def test_a_grader_is_for_reinforcement_only(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([prompt(i) for i in range(10)])
    with pytest.raises(DataError, match="a grader is for --method reinforcement, not sft"):
        check(path, method="sft", grader=EXACT)
    with pytest.raises(DataError, match="unknown method 'rl'"):
        check(path, method="rl")


def test_a_local_base_takes_reinforcement_and_the_default_model_is_not_held_against_it(
    write_jsonl: Callable[..., Path],
) -> None:
    path = write_jsonl([prompt(i) for i in range(10)])
    assert "FT303" not in {d.code for d in check(path, method="reinforcement").diagnostics}
    named = check(path, method="reinforcement", model="gpt-4o-mini-2024-07-18")
    assert [d.message for d in named.diagnostics if d.code == "FT303"] == [
        "gpt-4o-mini-2024-07-18 supports sft, dpo, not reinforcement"
    ]
    tiny = check(path, method="reinforcement", model="ftcli/tiny")
    assert "FT303" not in {d.code for d in tiny.diagnostics} and tiny.estimate.cost_usd == 0.0  # free, RFT too


def test_a_python_grader_is_checked_without_running_it(write_jsonl: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\ndef grade(sample):\n    return 1.0\n"
    multi = {"type": "multi", "name": "both", "calculate_output": "exact + code",
             "graders": {"exact": EXACT, "code": {"type": "python", "name": "code", "source": source}}}  # fmt: skip
    report = check(write_jsonl([prompt(i) for i in range(10)]), grader=multi, grader_file="grader.json")
    (invalid,) = [d for d in report.diagnostics if d.code == "FT142"]
    assert invalid.path == "graders.code.source" and "grade(sample, item)" in invalid.message
    assert not marker.exists()
