"""`check --model <local base>` counts as the base's training job does (issue 14): its own tokenizer and chat
template, examples cut at max_seq_length, answers as trained tokens, both sequences of a preference pair. The tiny
base's byte-level tokenizer makes the expected counts computable by hand: a ChatML message is <|im_start|>, the
bytes of "role\\ncontent", <|im_end|> and "\\n"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

from typer.testing import CliRunner  # noqa: E402

from ftcli.cli.app import app  # noqa: E402
from ftcli.data.check.engine import CheckOptions, check_file  # noqa: E402
from ftcli.data.local_bases import TEMPLATE_ENCODING, TINY_CONTEXT, TINY_NAME, local_base  # noqa: E402
from tests.local.zorbia import chat_records  # noqa: E402


def chatml_tokens(message: dict[str, Any]) -> int:
    """Tokens of one ChatML message under ftcli/tiny: two special tokens, the text's bytes, the newline after it."""
    return 1 + len(f"{message['role']}\n{message['content']}".encode()) + 1 + 1


def answer_tokens(message: dict[str, Any]) -> int:
    """Trained tokens of an assistant message: its content's bytes, <|im_end|> and the newline."""
    return len(message["content"].encode()) + 2


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_check(path: Path, **options: Any) -> Any:
    return check_file(path, options=CheckOptions(model=TINY_NAME, workers=1, **options))


def test_a_local_base_is_counted_with_its_own_tokenizer_and_template(tmp_path: Path) -> None:
    records = chat_records()
    records[0]["messages"][2]["content"] = "Quellan, 首都。"  # multi-byte text: three bytes a character
    report = tiny_check(write(tmp_path / "train.jsonl", records), epochs=2)
    totals = [sum(chatml_tokens(m) for m in r["messages"]) for r in records]
    trained = [answer_tokens(r["messages"][2]) for r in records]
    assert report.statistics.tokens_per_example.total == sum(totals)
    assert report.statistics.trained_tokens_per_example.total == sum(trained)
    assert report.statistics.tokens_per_example.max == max(totals)
    assert (report.encoding, report.counted_with, report.context_limit) == (TEMPLATE_ENCODING, "transformers", 2048)
    assert report.estimate.billed_tokens == 2 * sum(totals) and report.estimate.cost_usd == 0.0
    assert not [d for d in report.diagnostics if d.code in ("FT301", "FT302")]  # known, and nothing cut


def test_examples_past_max_seq_length_are_reported_and_the_estimate_cut_there(tmp_path: Path) -> None:
    records = chat_records()
    totals = [sum(chatml_tokens(m) for m in r["messages"]) for r in records]
    limit = sorted(totals)[len(totals) // 2]
    report = tiny_check(write(tmp_path / "train.jsonl", records), max_seq_length=limit, epochs=1)
    over = [line for line, total in enumerate(totals, start=1) if total > limit]
    assert over and [d.line for d in report.diagnostics if d.code == "FT301"] == over
    assert report.context_limit == limit
    assert report.estimate.tokens_per_epoch == sum(min(limit, t) for t in totals)


def test_special_tokens_of_the_base_are_found_in_text(tmp_path: Path) -> None:
    records = chat_records()[:1]
    records[0]["messages"][1]["content"] = "ignore this<|im_end|>"
    report = tiny_check(write(tmp_path / "train.jsonl", records))
    assert [(d.code, d.path) for d in report.diagnostics if d.code == "FT310"] == [("FT310", "messages[1].content")]


def test_a_preference_pair_counts_both_sequences(tmp_path: Path) -> None:
    prompt = [{"role": "user", "content": "Capital of Zorbia?"}]
    preferred, other = {"role": "assistant", "content": "Quellan."}, {"role": "assistant", "content": "Paris, I think."}
    record = {"input": {"messages": prompt}, "preferred_output": [preferred], "non_preferred_output": [other]}
    report = tiny_check(write(tmp_path / "dpo.jsonl", [record]), method="dpo")
    prompt_tokens = chatml_tokens(prompt[0])
    assert report.statistics.tokens_per_example.total == (
        2 * prompt_tokens + chatml_tokens(preferred) + chatml_tokens(other)
    )
    assert report.statistics.trained_tokens_per_example.total == answer_tokens(preferred) + answer_tokens(other)


def test_a_broken_record_is_reported_not_a_crash(tmp_path: Path) -> None:
    broken = {"messages": [{"role": "user", "content": {"not": "text"}}, {"role": "assistant", "content": "a"}]}
    report = tiny_check(write(tmp_path / "train.jsonl", [*chat_records()[:2], broken]))
    assert report.examples == 3 and report.errors >= 1
    assert any(d.line == 3 and d.severity.value == "error" for d in report.diagnostics)


def test_a_model_that_is_not_a_local_base_keeps_openai_counting(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", chat_records())
    assert local_base("acme/not-in-the-cache") is None and local_base("ft:gpt-4o-mini:org::abc") is None
    report = check_file(path, options=CheckOptions(model="acme/not-in-the-cache", workers=1))
    assert report.encoding == "o200k_base" and any(d.code == "FT302" for d in report.diagnostics)


def test_a_model_folder_is_counted_with_its_tokenizer(tmp_path: Path) -> None:
    from ftcli.data.local_bases import build_tiny_tokenizer

    folder = tmp_path / "models" / "legal"
    build_tiny_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 512}))
    base = local_base(str(folder))
    assert base is not None and base.context == 512 and base.max_seq_length() == 512
    records = chat_records()
    report = check_file(write(tmp_path / "t.jsonl", records), options=CheckOptions(model=str(folder), workers=1))
    assert report.statistics.tokens_per_example.total == sum(chatml_tokens(m) for r in records for m in r["messages"])


def test_check_cli_names_the_counting_and_the_truncation(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", chat_records())
    result = CliRunner().invoke(app, ["check", str(path), "--model", "ftcli/tiny", "--max-seq-length", "64"])
    assert "its own tokenizer and chat template, max_seq_length 64" in result.stdout
    assert "FT301" in result.stdout and result.exit_code == 0  # warnings only
    document = json.loads(CliRunner().invoke(app, ["--json", "check", str(path), "--model", "ftcli/tiny"]).stdout)
    assert (document["encoding"], document["context_limit"]) == (TEMPLATE_ENCODING, TINY_CONTEXT)
    assert document["estimate"]["cost_usd"] == 0.0
