"""Score a model on held-out chat examples: each example minus its last assistant message is asked, and the answer
is compared with that message (exact match and a similarity ratio). Used by `chat --eval`, and after a migration
to tell how close a new model comes to an old one's recorded answers."""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.service.chat import ChatParams, complete
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass(frozen=True, slots=True)
class EvalCase:
    line: int
    prompt: list[dict[str, Any]]  # the messages before the last assistant message
    reference: str


@dataclass(frozen=True, slots=True)
class EvalResult:
    line: int
    reference: str
    answer: str
    exact: bool
    similarity: float  # 0..1, difflib ratio on normalised text

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class EvalSummary:
    examples: int
    exact_matches: int
    mean_similarity: float

    @property
    def exact_rate(self) -> float:
        return self.exact_matches / self.examples if self.examples else 0.0


def chat_examples(path: Path, *, problem: str = "not a chat example") -> Iterator[tuple[int, list[Any]]]:
    """(line number, messages) of each non-blank line of a chat JSONL file; a line that isn't one is a usage error
    that names it (`problem` says what was expected)."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{path}:{number}: {problem}", hint=f"run `ftcli check {path}`") from None
        yield number, messages


def load_cases(path: Path) -> list[EvalCase]:
    cases = []
    for number, messages in chat_examples(path):
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None or not isinstance(messages[last].get("content"), str):
            raise UsageError(f"{path}:{number}: no assistant message with text to compare against")
        cases.append(EvalCase(number, messages[:last], messages[last]["content"]))
    if not cases:
        raise UsageError(f"{path} has no examples")
    return cases


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def score(reference: str, answer: str) -> tuple[bool, float]:
    a, b = normalise(reference), normalise(answer)
    return a == b, round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


def evaluate(client: OpenAI, params: ChatParams, cases: list[EvalCase]) -> Iterator[EvalResult]:
    for case in cases:
        answer = complete(client, params, case.prompt)
        exact, similarity = score(case.reference, answer)
        yield EvalResult(case.line, case.reference, answer, exact, similarity)


def summarise(results: list[EvalResult]) -> EvalSummary:
    n = len(results)
    return EvalSummary(n, sum(r.exact for r in results), round(sum(r.similarity for r in results) / n, 4) if n else 0)
