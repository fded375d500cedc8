"""`check` on a training file and its validation file: each file's findings are those it has on its own (FT230 by
its own examples), a validation file of the other format is one finding naming the training file's, and a file of
the other method's records is one finding naming the `--method` that trains it (issue 23, point 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ftcli.data.check.engine import CheckOptions, check_file, file_method
from ftcli.data.check.report import Report
from tests.conftest import chat, qa


def preference(i: int) -> dict[str, object]:
    return {"input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{2 * i}"}],
            "non_preferred_output": [{"role": "assistant", "content": "no idea"}]}  # fmt: skip


def bare(i: int) -> dict[str, object]:
    return chat(("user", f"question {i}?"), ("assistant", f"answer {i}."))


def found(report: Report, file: Path) -> list[tuple[int | None, str]]:
    return [(d.line, d.code) for d in report.diagnostics if d.file == str(file)]


def test_each_files_system_messages_are_judged_by_that_file_alone(write_jsonl: Callable[..., Path]) -> None:
    train = write_jsonl([qa(i) for i in range(12)], "train.jsonl")  # a system message everywhere
    val = write_jsonl([bare(i) for i in range(5)], "val.jsonl")  # none anywhere: a choice, as `check val` says
    assert "FT230" not in {d.code for d in check_file(val).diagnostics}
    assert found(check_file(train, validation=val), val) == []

    some = write_jsonl([qa(100), bare(1), qa(101)], "some.jsonl")  # one lacks the system message the others have
    assert found(check_file(train, validation=some), some) == [(2, "FT230")]
    assert [(d.line, d.code) for d in check_file(some).diagnostics if d.code == "FT230"] == [(2, "FT230")]

    mixed = write_jsonl([qa(i) for i in range(11)] + [bare(50)], "mixed.jsonl")  # the training file's own
    assert found(check_file(mixed, validation=val), mixed) == [(12, "FT230")]


def test_a_validation_file_of_the_other_format_is_one_finding_naming_the_training_files(
    write_jsonl: Callable[..., Path],
) -> None:
    train = write_jsonl([qa(i) for i in range(12)], "train.jsonl")
    val = write_jsonl([preference(i) for i in range(4)], "val.jsonl")
    (finding,) = check_file(train, validation=val).diagnostics
    assert (finding.file, finding.line, finding.code) == (str(val), 1, "FT103")
    assert finding.message == "4 of 4 records: preference (DPO) record, but the training file's records are chat (SFT)"

    (given,) = check_file(train, validation=val, options=CheckOptions(method="sft")).diagnostics
    assert given.code == "FT104" and given.fix is None  # a validation file follows its training file's method
    assert given.message == "4 of 4 records: preference (DPO) record, but --method sft trains on chat (SFT) records"


def test_a_file_of_the_other_methods_records_names_the_method_that_trains_it(write_jsonl: Callable[..., Path]) -> None:
    dpo = write_jsonl([preference(i) for i in range(12)])
    assert file_method(dpo) == "dpo" and check_file(dpo).method == "dpo" and check_file(dpo).errors == 0
    report = check_file(dpo, options=CheckOptions(method="sft"))
    (finding,) = report.diagnostics  # one for the file, not twelve
    assert (finding.line, finding.code) == (1, "FT104")
    assert finding.fix is not None and finding.fix.hint.startswith("--method dpo trains on it")

    chat_file = write_jsonl([qa(i) for i in range(12)])
    (wrong,) = check_file(chat_file, options=CheckOptions(method="dpo")).diagnostics
    assert wrong.message == "12 of 12 records: chat (SFT) record, but --method dpo trains on preference (DPO) records"
    assert wrong.fix is not None and wrong.fix.hint.startswith("--method sft trains on it")


def test_a_mixed_file_names_each_odd_record(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([qa(i) for i in range(12)] + [preference(1), preference(2)])
    mixed = [d for d in check_file(path).diagnostics if d.code in ("FT103", "FT104")]
    assert [(d.line, d.code) for d in mixed] == [(13, "FT103"), (14, "FT103")]
    assert mixed[0].message == "preference (DPO) record in a file of chat (SFT) records"
    given = [d for d in check_file(path, options=CheckOptions(method="sft")).diagnostics if d.code.startswith("FT10")]
    assert [(d.line, d.code) for d in given] == [(13, "FT104"), (14, "FT104")]


def test_file_method_reads_the_first_record_past_a_bom_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf{not json\n" + b'{"input": {"messages": []}}\n')
    assert file_method(path) == "dpo"
    path.write_bytes(b"")
    assert file_method(path) is None
