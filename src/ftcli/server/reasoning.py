"""A thinking model's generated text → its reasoning apart from its answer, as vLLM and DeepSeek's API return them
(`message.reasoning_content`, `delta.reasoning_content` when streaming).

A model whose chat template renders reasoning in `<think>…</think>` before the answer (Qwen3's, DeepSeek-R1's) writes
it so: `<think>\\n` reasoning `\\n</think>\\n\\n` answer. Some templates open the block in the generation prompt
(`opened`): the text then starts inside it. Text that doesn't start with a think block is all answer. The same
splitter serves whole and streamed answers, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ftcli.data.chat_template import THINK_CLOSE, THINK_OPEN

Field = Literal["reasoning_content", "content"]
Piece = tuple[Field, str]


class ReasoningSplitter:
    """Feed generated deltas; get (field, text) pieces as soon as they are certain. Text that could still be the
    start of a tag, or newlines that could still come before `</think>`, is held back until it can be told."""

    def __init__(self, *, opened: bool = False) -> None:
        self._state: Literal["start", "reasoning", "after", "content"] = "reasoning" if opened else "start"
        self._held = ""
        self._reasoned = False  # some reasoning went out (an empty think block gives none)

    def feed(self, delta: str) -> list[Piece]:
        self._held += delta
        pieces: list[Piece] = []
        while True:
            piece, progressed = self._step()
            if piece is not None and piece[1]:
                pieces.append(piece)
            if not progressed:
                return pieces

    def close(self) -> list[Piece]:
        """What is still held when generation ends: a cut-off think block's rest is reasoning, else answer."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == "reasoning":
            return [("reasoning_content", held)]
        if self._state == "after":
            held = held.lstrip("\n")
        return [("content", held)] if held else []

    def _step(self) -> tuple[Piece | None, bool]:
        """One move of the state machine: (a piece to send or None, whether it can move again)."""
        held = self._held
        if self._state == "start":
            begun = held.lstrip()
            if begun.startswith(THINK_OPEN):
                self._state, self._held = "reasoning", begun[len(THINK_OPEN) :].lstrip("\n")
                return None, True
            if THINK_OPEN.startswith(begun):  # nothing yet, or the tag's beginning: wait
                return None, False
            self._state = "content"
            return None, True
        if self._state == "reasoning":
            if not self._reasoned:
                held = self._held = held.lstrip("\n")
            end = held.find(THINK_CLOSE)
            if end >= 0:
                self._state, self._held = "after", held[end + len(THINK_CLOSE) :]
                return self._reasoning(held[:end].rstrip("\n")), True
            ready = _certain(held)
            self._held = held[ready:]
            return self._reasoning(held[:ready]), False
        if self._state == "after":
            self._held = held.lstrip("\n")
            if not self._held:
                return None, False
            self._state = "content"
            return None, True
        self._held = ""
        return ("content", held), False

    def _reasoning(self, text: str) -> Piece:
        self._reasoned = self._reasoned or bool(text)
        return "reasoning_content", text


def _certain(text: str) -> int:
    """How much of reasoning `text` can go out: not a tail that could begin `</think>`, nor newlines before it."""
    for keep in range(min(len(THINK_CLOSE) - 1, len(text)), 0, -1):
        if THINK_CLOSE.startswith(text[-keep:]):
            text = text[:-keep]
            break
    return len(text.rstrip("\n"))


def split_reasoning(deltas: Iterable[str], *, opened: bool = False) -> tuple[str | None, str]:
    """(the reasoning, or None when there is none; the answer) of a whole generated text or its deltas."""
    splitter = ReasoningSplitter(opened=opened)
    pieces = [piece for delta in deltas for piece in splitter.feed(delta)] + splitter.close()
    reasoning = "".join(text for field, text in pieces if field == "reasoning_content")
    return reasoning or None, "".join(text for field, text in pieces if field == "content")
