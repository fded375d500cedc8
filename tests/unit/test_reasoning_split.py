"""A thinking model's generated text → reasoning apart from the answer (server/reasoning.py), as `ftcli serve` answers
chat completions: `<think>` blocks in the text a Qwen3-style template trains the model to write, whole or in any
chunking of the stream (the same result), tags split across deltas never shown, text without a block all answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftcli.server.reasoning import ReasoningSplitter, split_reasoning


@pytest.mark.parametrize(
    ("generated", "opened", "expected"),
    [
        ("<think>\nTwo and two.\n</think>\n\n4.", False, ("Two and two.", "4.")),
        ("<think>\n\n</think>\n\nJust the answer.", False, (None, "Just the answer.")),  # thinking switched off
        ("No block: all answer.", False, (None, "No block: all answer.")),
        ("  \n<think>r</think>a", False, ("r", "a")),  # whitespace before the block
        ("a <think>x</think> b", False, (None, "a <think>x</think> b")),  # a tag inside the answer is answer
        ("<b>bold</b>", False, (None, "<b>bold</b>")),  # starts like a tag, isn't one
        ("The prompt opened it.\n</think>\n\nDone.", True, ("The prompt opened it.", "Done.")),
        ("<think>\ncut off by max_tokens", False, ("cut off by max_tokens", "")),
        ("<think>\nline one\n\nline two\n</think>\n\nA\n\nB\n", False, ("line one\n\nline two", "A\n\nB\n")),
        ("", False, (None, "")),
    ],
)
def test_reasoning_is_split_from_the_answer(generated: str, opened: bool, expected: tuple[str | None, str]) -> None:
    assert split_reasoning([generated], opened=opened) == expected


def test_tags_split_across_deltas_are_never_sent_as_text() -> None:
    splitter = ReasoningSplitter()
    sent = [
        piece for delta in ["<th", "ink>\nstep ", "one\n</", "think>", "\n\nfi", "ne"] for piece in splitter.feed(delta)
    ]
    sent += splitter.close()
    assert all("<" not in text and ">" not in text for _, text in sent), sent
    assert "".join(text for field, text in sent if field == "reasoning_content") == "step one"
    assert "".join(text for field, text in sent if field == "content") == "fine"
    assert [field for field, _ in sent] == sorted((field for field, _ in sent), reverse=True)  # reasoning first


def test_reasoning_streams_as_it_comes_not_all_at_the_end() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>\nfirst thought") == [("reasoning_content", "first thought")]
    assert splitter.feed(" and more") == [("reasoning_content", " and more")]


pieces = st.sampled_from(["</think>", "\n", "\n\n", "a", " ", "<", "</", "/", "think", ">", "<think>"])
openings = st.sampled_from(["", "<think>", "<think>\n", " \n<think>\n\n", "<th"])


@given(
    opening=openings,
    parts=st.lists(pieces, max_size=30),
    cuts=st.lists(st.integers(0, 400), max_size=20),
    opened=st.booleans(),
)
def test_any_chunking_of_the_stream_gives_the_whole_answers_split(
    opening: str, parts: list[str], cuts: list[int], opened: bool
) -> None:
    text = opening + "".join(parts)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    deltas = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert split_reasoning(deltas, opened=opened) == split_reasoning([text], opened=opened)
