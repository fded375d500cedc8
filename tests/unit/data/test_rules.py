"""Record rules as a table: one input line → the set of codes it must produce (and no others)."""

from __future__ import annotations

import json

import pytest

from ftcli.data.check.lint import LintOptions, lint_line
from ftcli.data.tokenizers import get_counting_encoding
from ftcli.data.tokens import TokenCounter
from tests.conftest import chat

OPTIONS = LintOptions(encoding="o200k_base", context_limit=200, expected_kind="chat")
COUNTER = TokenCounter(get_counting_encoding("o200k_base"))
S, U, A = ("system", "be brief"), ("user", "hi"), ("assistant", "hello")
SM, UM = {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}


def line(value: object) -> bytes:
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode()


def call(call_id: str = "c1", arguments: str = '{"x": 1}') -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


TOOL_CHAT = {
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "parallel_tool_calls": False,
}

CASES: list[tuple[str, object, set[str]]] = [
    ("clean", chat(S, U, A), set()),
    (
        "clean with weight 0 and name",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u", "name": "ann"},
                {"role": "assistant", "content": "a", "weight": 0},
                {"role": "user", "content": "u2"},
                {"role": "assistant", "content": "b", "weight": 1},
            ]
        },
        set(),
    ),
    ("clean tool calls", TOOL_CHAT, set()),
    (
        "tool call as last message (cookbook drone style)",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "tool_calls": [call()]},
            ]
        },
        set(),
    ),
    ("developer role counts as system", chat(("developer", "d"), U, A), set()),
    ("invalid json", '{"messages": [', {"FT002"}),
    ("not an object", "[1, 2]", {"FT100"}),
    ("legacy", {"prompt": "p", "completion": "c"}, {"FT102"}),
    ("no messages key", {"question": "hello"}, {"FT110"}),
    ("together plain text", {"text": "hello"}, {"FT106"}),
    ("alpaca record", {"instruction": "i", "input": "", "output": "o"}, {"FT105"}),
    ("kto record", {**chat(S, U, A), "label": False}, {"FT107"}),
    ("llamafactory v1 parts", {"messages": [{"role": "user", "content": [{"type": "text", "value": "u"}]}]}, {"FT105"}),
    ("empty user message", chat(S, ("user", ""), A), {"FT233"}),
    ("blank user message", chat(S, ("user", " \n"), A), {"FT233"}),
    ("placeholder", chat(S, U, ("assistant", "I am {{name}}.")), {"FT234"}),
    ("code braces are no placeholder", chat(S, U, ("assistant", "run: {{ secrets.TOKEN }}")), set()),
    ("reasoning", {"messages": [SM, UM, {"role": "assistant", "content": "4", "reasoning_content": "2+2"}]}, set()),
    ("reasoning alias", {"messages": [SM, UM, {"role": "assistant", "content": "4", "reasoning": "2+2"}]}, set()),
    (
        "reasoning twice",
        {"messages": [SM, UM, {"role": "assistant", "content": "4", "reasoning": "a", "reasoning_content": "a"}]},
        {"FT208"},
    ),  # fmt: skip
    (
        "reasoning not text",
        {"messages": [SM, UM, {"role": "assistant", "content": "4", "reasoning_content": 1}]},
        {"FT208"},
    ),  # fmt: skip
    (
        "reasoning on a user",
        {"messages": [SM, {**UM, "reasoning_content": "x"}, {"role": "assistant", "content": "a"}]},
        {"FT208"},
    ),
    ("messages not a list", {"messages": "hi"}, {"FT111"}),
    ("empty messages", {"messages": []}, {"FT111"}),
    ("unknown top-level key", {**chat(S, U, A), "extra": 1}, {"FT101"}),
    (
        "message not object",
        {"messages": ["hi", {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
        {"FT200", "FT230"},
    ),
    ("bad role", chat(S, ("bot", "x"), U, A), {"FT201"}),
    (
        "missing content",
        {"messages": [{"role": "system", "content": "s"}, {"role": "user"}, {"role": "assistant", "content": "a"}]},
        {"FT202"},
    ),
    ("content is a number", chat(S, ("user", 5), A), {"FT203"}),
    ("no assistant", chat(S, U), {"FT204"}),
    (
        "unknown message key",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u", "mood": "x"},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT205"},
    ),
    (
        "weight 0.5",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a", "weight": 0.5},
            ]
        },
        {"FT206"},
    ),
    (
        "weight on user",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u", "weight": 1},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT206"},
    ),
    (
        "empty name",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u", "name": ""},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT207"},
    ),
    (
        "tool arguments not a string",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
                },
            ]
        },
        {"FT210"},
    ),
    (
        "tool arguments not JSON",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "tool_calls": [call(arguments="{x:")]},
            ]
        },
        {"FT210"},
    ),
    (
        "orphan tool reply",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "tool", "tool_call_id": "nope", "content": "1"},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT211"},
    ),
    (
        "unanswered tool call",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "tool_calls": [call()]},
                {"role": "user", "content": "and?"},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT212"},
    ),
    (
        "legacy function_call ok",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": "1"},
                {"role": "assistant", "content": "a"},
            ],
            "functions": [{"name": "f"}],
        },
        set(),
    ),
    (
        "bad function_call",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "function_call": {"name": "f"}},
            ]
        },
        {"FT213"},
    ),
    (
        "image in assistant",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            ]
        },
        {"FT220"},
    ),
    (
        "too many images",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}] * 65},
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT221"},
    ),
    (
        "gif image",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/gif;base64,AAAA"}}],
                },
                {"role": "assistant", "content": "a"},
            ]
        },
        {"FT222"},
    ),
    (
        "image in user ok",
        {
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
                {"role": "assistant", "content": "a"},
            ]
        },
        set(),
    ),
    ("no system", chat(U, A), {"FT230"}),
    ("no user", chat(S, A), {"FT231"}),
    ("empty assistant", chat(S, U, ("assistant", "")), {"FT232"}),
    ("over the context limit", chat(S, U, ("assistant", "word " * 300)), {"FT301"}),
    ("special token", chat(S, ("user", "end <|endoftext|> here"), A), {"FT310"}),
    (
        "preference record in a chat file",
        {
            "input": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
            "preferred_output": [{"role": "assistant", "content": "a"}],
            "non_preferred_output": [{"role": "assistant", "content": "b"}],
        },
        {"FT103"},
    ),
    ("tools not a list", {**chat(S, U, A), "tools": {"name": "f"}}, {"FT120"}),
    ("parallel_tool_calls not bool", {**chat(S, U, A), "parallel_tool_calls": "no"}, {"FT121"}),
    ("email", chat(S, ("user", "write to li.wei@corp-mail.cn"), A), {"FT501"}),
    ("documentation email is fine", chat(S, ("user", "write to someone@example.com"), A), set()),
    ("api key", chat(S, ("user", "my key is sk-proj-AbCdEfGhIjKlMnOpQrStUvWx"), A), {"FT506"}),
    (
        "lone surrogate escape",
        '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "bad \\ud800 here"}, '
        '{"role": "assistant", "content": "a"}]}',
        {"FT007"},
    ),
    (
        "surrogate pair escape is an emoji",
        '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "ok \\ud83d\\ude00"}, '
        '{"role": "assistant", "content": "a"}]}',
        set(),
    ),
]


@pytest.mark.parametrize(("name", "value", "codes"), CASES, ids=[c[0] for c in CASES])
def test_record_rules(name: str, value: object, codes: set[str]) -> None:
    result = lint_line(line(value), 2, OPTIONS, COUNTER)
    assert {f.code for f in result.findings} == codes


def test_lone_surrogate_names_its_path_and_is_still_counted() -> None:
    raw = b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a\\udc00b"}]}'
    result = lint_line(raw, 3, OPTIONS, COUNTER)
    (finding,) = [f for f in result.findings if f.code == "FT007"]
    assert (finding.code, finding.path) == ("FT007", "messages[1].content")
    assert "\\udc00" in finding.message
    assert result.tokens is not None and result.tokens.trained == COUNTER.count("a\ufffdb")


def test_bom_on_line_one_only() -> None:
    raw = b"\xef\xbb\xbf" + line(chat(S, U, A))
    assert {f.code for f in lint_line(raw, 1, OPTIONS, COUNTER).findings} == {"FT003"}
    assert {f.code for f in lint_line(raw, 2, OPTIONS, COUNTER).findings} == {"FT002"}


def test_invalid_utf8_names_the_column() -> None:
    result = lint_line(b'{"messages": "\xff"}', 1, OPTIONS, COUNTER)
    assert [(f.code, f.column) for f in result.findings] == [("FT001", 15)]


def test_invalid_json_names_the_column() -> None:
    result = lint_line(b'{"a": 1 "b": 2}', 1, OPTIONS, COUNTER)
    assert [(f.code, f.column) for f in result.findings] == [("FT002", 9)]


def test_paths_point_at_the_field() -> None:
    result = lint_line(line(chat(S, ("bot", "x"), U, A)), 1, OPTIONS, COUNTER)
    assert [f.path for f in result.findings] == ["messages[1].role"]


def test_dpo_rules() -> None:
    dpo = LintOptions(encoding="o200k_base", context_limit=None, expected_kind="preference", method_given=True)
    good = {
        "input": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
        "preferred_output": [{"role": "assistant", "content": "yes"}],
        "non_preferred_output": [{"role": "assistant", "content": "no"}],
    }
    assert lint_line(line(good), 1, dpo, COUNTER).findings == []
    two_outputs = {**good, "preferred_output": [{"role": "assistant", "content": "a"}] * 2}
    assert {f.code for f in lint_line(line(two_outputs), 1, dpo, COUNTER).findings} == {"FT131"}
    no_input = {k: v for k, v in good.items() if k != "input"}
    assert {f.code for f in lint_line(line(no_input), 1, dpo, COUNTER).findings} == {"FT130"}
    assert {f.code for f in lint_line(line(chat(S, U, A)), 1, dpo, COUNTER).findings} == {"FT104"}
