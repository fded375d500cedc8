"""`ftcli eval`'s graders against values worked out by hand, Chinese text and tool calls included; the statistics;
and reading cases with their bad lines named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftcli.data.errors import DataError
from ftcli.data.eval import stats
from ftcli.data.eval.cases import read_cases
from ftcli.data.eval.graders import GRADERS, Answer, Reference, grader, tokens

pytest.importorskip("sacrebleu", reason="the eval extra (scripts/test installs it)")


def score(name: str, reference: str, answer: str, ref_calls: Any = (), calls: Any = (), **options: Any) -> Any:
    return GRADERS[name].score(Reference(reference, tuple(ref_calls)), Answer(answer, tuple(calls)), options)


def test_exact_and_normalised_exact() -> None:
    assert score("exact", "Quellan.", "Quellan.") == 1.0 and score("exact", "Quellan.", "quellan") == 0.0
    assert score("normalised-exact", "Quellan.", "  quellan ") == 1.0
    assert score("normalised-exact", "试用期六个月。", "试用期六个月") == 1.0  # CJK punctuation ignored too
    assert score("normalised-exact", "ＡＢＣ１２３", "abc123") == 1.0  # full-width forms (NFKC)
    assert score("normalised-exact", "六个月", "三个月") == 0.0


def test_chrf_scores_characters_so_chinese_needs_no_segmentation() -> None:
    assert score("chrf", "ab", "ab") == 1.0 and score("chrf", "ab", "xy") == 0.0
    # "ba" against "ab": unigrams all match (F = 1), the one bigram doesn't (F = 0); the mean over the two orders
    assert score("chrf", "ab", "ba") == pytest.approx(0.5)
    assert score("chrf", "劳动 合同", "劳动合同") == 1.0  # whitespace is not part of chrF's n-grams
    close = score("chrf", "劳动合同的试用期最长不得超过六个月。", "劳动合同的试用期最长六个月。")
    far = score("chrf", "劳动合同的试用期最长不得超过六个月。", "公司应当按时支付工资。")
    assert 0.4 < close < 1.0 and far < 0.1


def test_rouge_l_counts_chinese_by_character() -> None:
    assert tokens("劳动合同 is Labour-Law 2024！") == ["劳", "动", "合", "同", "is", "labour", "law", "2024"]
    # reference 13 characters (punctuation dropped), answer 17, their longest common subsequence 13:
    # P = 13/17, R = 13/13, F = 2PR / (P + R) = 26/30
    value = score("rouge-l", "劳动合同的试用期最长六个月。", "劳动合同的试用期最长不得超过六个月。")
    assert value == pytest.approx(26 / 30)
    assert score("rouge-l", "the capital is Quellan", "Quellan is the capital") == pytest.approx(0.5)  # LCS 2 of 4
    assert score("rouge-l", "", "anything") is None


def test_tool_calls_compare_names_and_arguments_as_json_in_any_order() -> None:
    weather = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}
    reordered = {"name": "get_weather", "arguments": '{"unit":"c",  "city":"Paris"}'}
    time = {"name": "get_time", "arguments": '{"zone": "CET"}'}
    assert score("tool-calls", "", "", [weather], [reordered]) == 1.0
    assert score("tool-calls", "", "", [weather, time], [time, reordered]) == 1.0  # order doesn't count
    assert score("tool-calls", "", "", [weather, time], [reordered]) == 0.5  # one of two
    assert score("tool-calls", "", "", [weather], [{**weather, "arguments": '{"city": "Lyon", "unit": "c"}'}]) == 0.0
    assert score("tool-calls", "", "", [weather], [reordered, time]) == 0.5  # an extra call costs too
    assert score("tool-calls", "text", "text") is None and score("tool-calls", "text", "", [], [time]) == 0.0


def test_json_schema_and_length_graders() -> None:
    assert score("json", '{"a": 1}', '```json\n{"a": 2}\n```') == 1.0 and score("json", '{"a": 1}', "a: 2") == 0.0
    assert score("json", "plain text", "{}") is None
    schema = {"type": "object", "required": ["article"], "properties": {"article": {"type": "integer"}}}
    assert score("json-schema", "", '{"article": 19}', schema=schema) == 1.0
    assert score("json-schema", "", '{"article": "19"}', schema=schema) == 0.0
    with pytest.raises(DataError, match="needs a schema"):
        score("json-schema", "", "{}")
    assert score("length-ratio", "abcd", "ab") == 0.5 and score("length-ratio", "六个月", "六个月") == 1.0
    with pytest.raises(DataError, match="unknown grader"):
        grader("bleu-9000")


def test_statistics_means_intervals_and_wins() -> None:
    steady = stats.summarise([1.0, 1.0, 1.0])
    assert (steady.n, steady.mean, steady.low, steady.high) == (3, 1.0, 1.0, 1.0)
    coin = stats.summarise([0.0, 1.0] * 50 + [None])
    assert coin.n == 100 and coin.mean == 0.5 and coin.low is not None and coin.high is not None
    assert 0.35 < coin.low < 0.5 < coin.high < 0.65
    assert stats.summarise([None]).mean is None
    versus = stats.compare([1.0, 0.5, 0.2, None], [0.5, 0.5, 0.9, 1.0])
    assert (versus.wins, versus.ties, versus.losses) == (1, 1, 1)


def test_cases_take_the_last_assistant_message_and_name_bad_lines(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    calls = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "get_weather", "arguments": "{}"}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }  # fmt: skip
    lines = [
        json.dumps(good),
        "{broken",
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        json.dumps(calls),
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    cases, problems = read_cases(path)
    assert [c.line for c in cases] == [1, 4] and [p.line for p in problems] == [2, 3]
    assert cases[0].prompt == [{"role": "user", "content": "q"}] and cases[0].reference == "a"
    assert cases[1].reference_calls == [{"name": "get_weather", "arguments": "{}"}] and cases[1].tools
    assert cases[0].key != cases[1].key
