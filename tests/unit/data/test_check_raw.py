"""Issue 23: `check` on a file that is not chat data yet gives one finding naming what the file looks like and the
exact `convert` command (or that no conversion exists), and no statistics or cost for data that has none; reasoning
traces are validated, counted in the trained tokens and the cost, and flagged for a model that can't train them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.check.report import Report
from ftcli.data.tokenizers import get_counting_encoding

Record = dict[str, Any]
runner = CliRunner()


def codes(report: Report) -> Counter[str]:
    return Counter(d.code for d in report.diagnostics)


def turns(question: str, answer: str) -> list[Record]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


RAW: list[tuple[str, list[Record], str, str]] = [
    ("alpaca", [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(3)], "FT105", "--preset alpaca"),
    ("sharegpt", [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}] * 3, "FT105",
     "--preset sharegpt"),
    ("v1", [{"messages": [{"role": "user", "content": [{"type": "text", "value": "q"}], "loss_weight": 0.0}]}] * 3,
     "FT105", "--preset llamafactory-v1"),
    ("v1-dpo", [{"chosen_messages": [], "rejected_messages": []}] * 3, "FT105", "--preset llamafactory-v1"),
    ("kto", [{"messages": turns("q", "a"), "label": i % 2 == 0} for i in range(3)], "FT107",
     "--preset openai --kto-to dpo"),
    ("mllm", [{"messages": turns("<image>q", "a"), "images": ["1.jpg"]}] * 3, "FT105", "--preset openai"),
    ("legacy", [{"prompt": "p ->", "completion": " c\n"}] * 3, "FT102", "--preset prompt-completion"),
    ("fields", [{"question": "q", "answer": "a"}] * 3, "FT110", "--map user=FIELD --map assistant=FIELD"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "records", "code", "options"), RAW, ids=[r[0] for r in RAW])
def test_a_raw_file_gets_one_finding_with_the_exact_command(
    name: str, records: list[Record], code: str, options: str, write_jsonl: Callable[..., Path]
) -> None:
    path = write_jsonl(records, name=f"{name}.jsonl")
    report = check_file(path)
    assert codes(report) == Counter({code: 1}), report.diagnostics
    (finding,) = report.diagnostics
    assert finding.line == 1 and finding.message.startswith("3 of 3 records")
    assert finding.fix is not None
    assert finding.fix.hint.startswith(f"ftcli convert {path} -o {path.with_name(f'{name}.chat.jsonl')} {options}")
    assert report.examples == 0 and report.exit_code() == 1


def test_together_text_format_is_named_as_training_only_on_together(write_jsonl: Callable[..., Path]) -> None:
    report = check_file(write_jsonl([{"text": "Some pretraining text."}] * 4))
    (finding,) = report.diagnostics
    assert finding.code == "FT106" and finding.fix is None
    assert "Together's plain-text records" in finding.message and "trains only on Together" in finding.message


def test_a_json_array_names_its_records_format_in_the_fix(datasets: Path) -> None:
    source = datasets / "llamafactory/alpaca_en_demo.json"
    (finding,) = check_file(source).diagnostics
    assert finding.code == "FT004" and "its records are Alpaca records" in finding.message
    assert finding.fix is not None and finding.fix.hint.endswith("alpaca_en_demo.chat.jsonl --preset alpaca")


def test_a_raw_file_shows_no_statistics_and_no_cost(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(20)])
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stdout.count("FT105") == 1 and f"fix: ftcli convert {path}" in result.stdout
    assert "Per example" not in result.stdout and "estimated cost" not in result.stdout and "$" not in result.stdout


def test_a_stray_raw_record_in_a_chat_file_is_one_finding_at_its_line(write_jsonl: Callable[..., Path]) -> None:
    chats = [{"messages": turns(f"q{i}", "a")} for i in range(12)]
    report = check_file(write_jsonl([*chats, {"instruction": "i", "input": "", "output": "o"}]))
    (finding,) = [d for d in report.diagnostics if d.code == "FT105"]
    assert finding.line == 13 and report.examples == 12


# -- reasoning ----------------------------------------------------------------------------------------------

REASONING = "First add two and two, which gives four; nothing else is asked."


def with_reasoning(i: int, key: str = "reasoning_content") -> Record:
    return {"messages": [*turns(f"What is {i}+{i}?", "4")[:1], {"role": "assistant", "content": "4", key: REASONING}]}


def test_reasoning_tokens_count_in_the_trained_tokens_and_the_cost(write_jsonl: Callable[..., Path]) -> None:
    plain = check_file(write_jsonl([{"messages": turns(f"What is {i}+{i}?", "4")} for i in range(12)], name="p.jsonl"))
    thinking = check_file(write_jsonl([with_reasoning(i) for i in range(12)], name="r.jsonl"))
    extra = get_counting_encoding("o200k_base").count(REASONING)
    assert thinking.statistics.trained_tokens_per_example.total - plain.statistics.trained_tokens_per_example.total == (
        12 * extra
    )
    assert thinking.estimate.tokens_per_epoch - plain.estimate.tokens_per_epoch == 12 * extra
    assert thinking.estimate.cost_usd is not None and plain.estimate.cost_usd is not None
    assert thinking.estimate.cost_usd > plain.estimate.cost_usd
    alias = check_file(write_jsonl([with_reasoning(i, "reasoning") for i in range(12)], name="a.jsonl"))
    assert alias.statistics == thinking.statistics  # Together's name for it counts the same


def test_reasoning_is_flagged_for_a_model_that_cant_train_it(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([with_reasoning(i) for i in range(12)])
    openai = check_file(path, options=CheckOptions(model="gpt-4o-2024-08-06"))
    (flag,) = [d for d in openai.diagnostics if d.code == "FT320"]
    assert flag.severity.value == "warning" and flag.line is None
    assert flag.message.startswith("12 examples carry reasoning, which gpt-4o-2024-08-06 can't train on")
    unknown = check_file(path, options=CheckOptions(model="Qwen/Qwen3-8B"))  # Together trains it: not flagged
    assert "FT320" not in codes(unknown)
    plain = check_file(write_jsonl([{"messages": turns(f"q{i}", "a")} for i in range(12)], name="plain.jsonl"))
    assert "FT320" not in codes(plain)


def test_reasoning_in_the_validation_file_is_flagged_too(write_jsonl: Callable[..., Path]) -> None:
    train = write_jsonl([{"messages": turns(f"q{i}", "a")} for i in range(12)], name="train.jsonl")
    validation = write_jsonl([with_reasoning(100)], name="validation.jsonl")
    report = check_file(train, validation=validation, options=CheckOptions(model="gpt-4o-mini"))
    assert "FT320" in codes(report)


def test_the_rules_name_empty_prompts_and_placeholders(write_jsonl: Callable[..., Path]) -> None:
    records = [{"messages": turns(f"q{i}", "a")} for i in range(10)]
    records += [{"messages": turns("", "a")}, {"messages": turns("Who?", "I am {{name}}.")}]
    report = check_file(write_jsonl([json.loads(json.dumps(r)) for r in records]))
    assert [(d.line, d.code, d.path) for d in report.diagnostics] == [
        (11, "FT233", "messages[0].content"),
        (12, "FT234", "messages[1].content"),
    ]
