"""Property-based tests: for any bytes, check never raises and its diagnostics point at lines that exist; any
record convert writes passes check; converting twice gives the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.convert.pipeline import ConvertOptions, convert_text
from ftcli.data.diagnostics import Severity

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
OPTIONS = CheckOptions(workers=1)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot", 3])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": st.text(max_size=30) | json_values}), max_size=5)
records = st.one_of(
    json_values, st.fixed_dictionaries({"messages": messages}), st.fixed_dictionaries({"messages": json_values})
)
lines = st.one_of(records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=60))


def assert_consistent(path: Path) -> None:
    report = check_file(path, options=OPTIONS)
    n_lines = path.read_bytes().count(b"\n") + 1
    for d in report.diagnostics:
        assert d.line is None or 1 <= d.line <= n_lines
        assert d.code and d.message
    errors = any(d.severity is Severity.ERROR for d in report.diagnostics)
    assert report.exit_code() == (1 if errors else 0)


@SETTINGS
@given(st.binary(max_size=400))
def test_check_never_raises_on_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.jsonl"
    path.write_bytes(data)
    assert_consistent(path)


@SETTINGS
@given(st.lists(lines, max_size=12))
def test_check_never_raises_on_jsonish_lines(tmp_path: Path, items: list[bytes]) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"\n".join(items))
    assert_consistent(path)


text = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40).filter(lambda s: s.strip())
alpaca = st.fixed_dictionaries({"instruction": text, "input": st.text(max_size=20), "output": text})


@SETTINGS
@given(st.lists(alpaca, min_size=1, max_size=15))
def test_converted_records_pass_check_and_convert_is_idempotent(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    source = json.dumps(rows, ensure_ascii=False)
    once, result = convert_text(source, name="rows.json", options=ConvertOptions(preset="alpaca"))
    assert len(once) + len(result.skipped) == len(rows)
    path = tmp_path / "converted.jsonl"
    path.write_text("".join(once), encoding="utf-8")
    report = check_file(path, options=CheckOptions(workers=1, ignore=("FT401", "FT5", "FT310")))
    assert report.errors == 0, report.diagnostics
    twice, _ = convert_text("".join(once), name="converted.jsonl", options=ConvertOptions())
    assert twice == once
