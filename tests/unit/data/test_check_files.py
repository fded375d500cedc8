"""Expected verdicts of `check` on the real third-party files in ../shared/datasets."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.check.scan import plan_chunks
from ftcli.data.diagnostics import Severity
from ftcli.data.errors import DataError
from tests.conftest import chat, qa

CHATLAW_SYSTEM = "你一个名叫ChatLAW，由北京大学团队开发的人工智能助理：=你一个人工智能法律助理："


def codes(report: object) -> Counter[str]:
    return Counter(d.code for d in report.diagnostics)  # type: ignore[attr-defined]


def test_toy_chat_file(datasets: Path) -> None:
    report = check_file(
        datasets / "openai-cookbook/toy_chat_fine_tuning.jsonl",
        options=CheckOptions(model="gpt-3.5-turbo-0125", today=dt.date(2026, 11, 27)),
    )
    line_level = [d for d in report.diagnostics if d.line is not None]
    assert not [d for d in line_level if d.severity is Severity.ERROR]
    assert [(d.line, d.code) for d in line_level] == [(3, "FT230"), (4, "FT231")]
    file_level = {d.code: d for d in report.diagnostics if d.line is None}
    assert file_level["FT401"].severity is Severity.ERROR and "5 examples" in file_level["FT401"].message
    assert "shut down on 2026-10-23" in file_level["FT304"].message
    assert report.encoding == "cl100k_base"
    assert sorted(report.largest_examples) == [(1, 45), (2, 111), (3, 26), (4, 28), (5, 8032)]
    assert report.statistics.tokens_per_example.total == 45 + 111 + 26 + 28 + 8032
    assert report.exit_code() == 1


def test_drone_tool_calls_are_valid(datasets: Path) -> None:
    report = check_file(datasets / "openai-cookbook/drone_training.jsonl")
    assert report.examples == 103
    assert report.errors == 0 and report.warnings == 0
    assert report.exit_code(strict=True) == 0


def test_unescaped_quotes_report_line_6_and_check_the_rest(datasets: Path) -> None:
    report = check_file(datasets / "malformed/semaphore_data3_unescaped_quotes_line6.jsonl")
    assert [(d.line, d.code) for d in report.diagnostics if d.code == "FT002"] == [(6, "FT002")]
    assert report.records == 10
    (legacy,) = [d for d in report.diagnostics if d.code == "FT102"]
    assert "9 of 10 records" in legacy.message
    assert legacy.fix is not None and "ftcli convert" in legacy.fix.hint


def test_pretty_printed_file_gets_one_clear_diagnostic(datasets: Path) -> None:
    report = check_file(datasets / "malformed/mistral_cookbook_60_pretty_printed.jsonl")
    assert [(d.code, d.line) for d in report.diagnostics] == [("FT004", 1)]
    assert report.diagnostics[0].fix is not None and "ftcli convert" in report.diagnostics[0].fix.hint


def test_bom_file_gets_a_bom_finding(datasets: Path) -> None:
    report = check_file(datasets / "malformed/azure_docs_110314_utf8_bom_empty_prompt.jsonl")
    assert ("FT003", 1) in [(d.code, d.line) for d in report.diagnostics]
    assert codes(report)["FT002"] == 0  # the BOM doesn't hide the records behind it


def test_legacy_file_is_recognised(datasets: Path) -> None:
    report = check_file(datasets / "legacy-prompt-completion/semaphore_data1.jsonl")
    assert codes(report) == Counter({"FT102": 1})
    assert "101 of 101" in report.diagnostics[0].message


def test_raw_chatlaw_file_gets_one_finding_with_the_exact_convert_command(datasets: Path) -> None:
    source = datasets / "chatlaw/demo_data_法律咨询.jsonl"
    report = check_file(source)
    assert codes(report) == Counter({"FT105": 1})  # one finding for the file, not one per record
    (finding,) = report.diagnostics
    assert finding.line == 1 and "20 of 20 records" in finding.message and "ChatLaw" in finding.message
    assert finding.fix is not None
    assert (
        finding.fix.hint
        == f"ftcli convert {source} -o {source.with_name('demo_data_法律咨询.chat.jsonl')} --preset chatlaw"
    )
    assert report.exit_code() == 1 and report.examples == 0


def test_same_diagnostics_in_one_process_and_many(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    records = [qa(i) for i in range(3000)] + [chat(("system", "s"), ("user", "d"), ("assistant", "d"))] * 2
    records.append("{oops")
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    chunks = list(plan_chunks(path, size=4096))
    assert len(chunks) > 10 and chunks[0][2] == 1
    serial = check_file(path, options=CheckOptions(workers=1, chunk_bytes=4096))
    parallel = check_file(path, options=CheckOptions(workers=2, chunk_bytes=4096))
    assert serial.diagnostics == parallel.diagnostics
    assert serial.statistics == parallel.statistics
    assert [(d.line, d.code) for d in parallel.diagnostics] == [(3002, "FT402"), (3003, "FT002")]


def test_chunks_cover_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    lines = [("x" * (i % 50)) for i in range(2000)]
    path.write_text("\n".join(lines))  # no trailing newline
    data = path.read_bytes()
    rebuilt = b"".join(data[o : o + n] for o, n, _ in plan_chunks(path, size=1000))
    assert rebuilt == data
    for offset, _, first_line in plan_chunks(path, size=1000):
        assert data[:offset].count(b"\n") + 1 == first_line


def test_duplicates_near_duplicates_and_overlap(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    train = write_jsonl(
        [qa(i) for i in range(12)]
        + [
            qa(3),
            chat(
                ("system", "You answer questions about numbers."),
                ("user", "what is 4 plus 4"),
                ("assistant", "4 PLUS 4 is 8"),
            ),
        ],
        "train.jsonl",
    )
    val = write_jsonl([qa(5), qa(100)], "val.jsonl")
    report = check_file(train, validation=val)
    found = [(Path(d.file or "").name, d.line, d.code) for d in report.diagnostics if d.code.startswith("FT4")]
    assert found == [("train.jsonl", 13, "FT402"), ("train.jsonl", 14, "FT403"), ("val.jsonl", 1, "FT404")]
    assert "line 4" in next(d.message for d in report.diagnostics if d.code == "FT402")
    assert report.validation_examples == 2


def test_select_ignore_and_pii_error(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(10)] + [chat(("user", "mail a.b@corp.cn"), ("assistant", "ok"))])
    default = check_file(path)
    assert {d.code: d.severity for d in default.diagnostics} == {"FT230": Severity.WARNING, "FT501": Severity.WARNING}
    assert default.exit_code() == 0 and default.exit_code(strict=True) == 1
    strict_pii = check_file(path, options=CheckOptions(pii="error"))
    assert strict_pii.exit_code() == 1
    assert [d.code for d in check_file(path, options=CheckOptions(select=("FT5",))).diagnostics] == ["FT501"]
    assert [d.code for d in check_file(path, options=CheckOptions(ignore=("pii-email",))).diagnostics] == ["FT230"]
    assert [d.code for d in check_file(path, options=CheckOptions(pii="off")).diagnostics] == ["FT230"]


def test_statistics_and_estimate(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(20)])
    report = check_file(path, options=CheckOptions(model="gpt-4o-mini", epochs=2))
    tokens = report.statistics.tokens_per_example
    assert tokens.count == 20 and tokens.min <= tokens.p5 <= tokens.median <= tokens.p95 <= tokens.max
    assert report.estimate.billed_tokens == 2 * tokens.total
    assert report.estimate.cost_usd == pytest.approx(2 * tokens.total / 1e6 * 3.0, abs=1e-4)
    assert report.statistics.messages_per_example.mean == 3


def test_unknown_model_and_method_support(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(10)])
    unknown = check_file(path, options=CheckOptions(model="my-llama"))
    assert [d.code for d in unknown.diagnostics] == ["FT302"]
    assert unknown.estimate.cost_usd is None and unknown.context_limit is None


def test_empty_missing_and_directory_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert [d.code for d in check_file(empty).diagnostics] == ["FT006"]
    with pytest.raises(DataError, match="no such file"):
        check_file(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="directory"):
        check_file(tmp_path)
