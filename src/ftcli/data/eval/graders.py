"""The graders of `ftcli eval`, each registered once with its name and what it measures. A grader scores one answer
against its case's reference in 0..1 (1: as good as the reference), or None where it does not apply (tool-call
match on a case whose reference calls no tool). All run offline.

chrF comes from sacrebleu (the reference implementation: character n-grams, so Chinese is scored by its characters
without any segmentation) and ROUGE-L from Google's rouge-score, given a tokenizer that splits CJK text into
characters and other text into words (its default one drops every non-ASCII letter, which would score Chinese as
empty). Both come with `pip install 'ftcli[eval]'`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ftcli.data.errors import DataError

Score = float | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a model answered: its text and the tool calls it made ({"name", "arguments"})."""

    text: str
    calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Reference:
    text: str
    calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Grader:
    name: str
    what: str
    score: Callable[[Reference, Answer, dict[str, Any]], Score]  # (reference, answer, options such as a schema)


def normalise(text: str) -> str:
    """NFKC (full-width forms as ASCII), case folded, whitespace collapsed, punctuation (ASCII and CJK) removed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in folded if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split())


_CJK_OR_WORD = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+", re.UNICODE
)  # one token per CJK character (Han, kana, Hangul), one per run of other letters and digits


def tokens(text: str) -> list[str]:
    """ROUGE's tokens: CJK characters one by one, other words whole, case folded; punctuation dropped."""
    return _CJK_OR_WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def exact(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    return float(answer.text == reference.text)


def normalised_exact(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    return float(normalise(answer.text) == normalise(reference.text))


def chrf(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    if not reference.text:
        return None
    return float(_chrf().sentence_score(answer.text, [reference.text]).score) / 100


def rouge_l(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    if not reference.text:
        return None
    return float(_rouge().score(reference.text, answer.text)["rougeL"].fmeasure)


def json_valid(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    """The answer parses as JSON (a fenced ```json block is unwrapped first); None when the reference isn't JSON."""
    if _json(reference.text) is _NOT_JSON:
        return None
    return float(_json(answer.text) is not _NOT_JSON)


def json_schema(_reference: Reference, answer: Answer, options: dict[str, Any]) -> Score:
    """The answer is JSON that validates against `--schema` (every case; a missing schema is a usage error)."""
    schema = options.get("schema")
    if schema is None:
        raise DataError("the json-schema grader needs a schema", hint="ftcli eval … --grader json-schema --schema FILE")
    value = _json(answer.text)
    if value is _NOT_JSON:
        return 0.0
    try:
        import jsonschema
    except ImportError:
        raise DataError("the json-schema grader needs jsonschema", hint="pip install 'ftcli[eval]'") from None
    return float(jsonschema.Draft202012Validator(schema).is_valid(value))


def tool_calls(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    """The same calls (function names, and arguments compared as JSON values: key order and spacing don't count),
    in any order; partial credit is the share of calls matched, over the larger of the two lists."""
    if not reference.calls:
        return None if not answer.calls else 0.0
    wanted = [_call_key(c) for c in reference.calls]
    made = [_call_key(c) for c in answer.calls]
    matched = 0
    for call in made:
        if call in wanted:
            wanted.remove(call)
            matched += 1
    return matched / max(len(reference.calls), len(answer.calls))


def similarity(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    """difflib's ratio of the normalised texts: twice the characters in matching runs over both lengths (1: equal
    once normalised). Offline and without the eval extra: `chat --eval`'s score."""
    return difflib.SequenceMatcher(None, normalise(reference.text), normalise(answer.text), autojunk=False).ratio()


def length_ratio(reference: Reference, answer: Answer, _options: dict[str, Any]) -> Score:
    """min/max of the two lengths in characters (1: the same length); None for an empty reference."""
    a, b = len(answer.text.strip()), len(reference.text.strip())
    if b == 0:
        return None
    return min(a, b) / max(a, b)


GRADERS: dict[str, Grader] = {
    grader.name: grader
    for grader in (
        Grader("exact", "the answer is the reference, character for character", exact),
        Grader("normalised-exact", "equal after NFKC, case folding, whitespace and punctuation", normalised_exact),
        Grader("chrf", "chrF (sacrebleu): character n-gram F-score, for any language, 0..1", chrf),
        Grader("rouge-l", "ROUGE-L F (rouge-score), CJK by character, other text by word, 0..1", rouge_l),
        Grader("json", "the answer is valid JSON (cases whose reference is JSON)", json_valid),
        Grader("json-schema", "the answer is JSON that validates against --schema", json_schema),
        Grader("tool-calls", "the same tool calls: names and arguments as JSON, in any order", tool_calls),
        Grader("similarity", "difflib's ratio of the normalised texts (chat --eval's), 0..1", similarity),
        Grader("length-ratio", "shorter length / longer length, in characters", length_ratio),
    )
}
DEFAULT_GRADERS = ("normalised-exact", "chrf", "rouge-l", "tool-calls")


def grader(name: str) -> Grader:
    found = GRADERS.get(name) or GRADERS.get(name.replace("_", "-"))
    if found is None:
        raise DataError(f"unknown grader {name!r}", hint=f"graders: {', '.join(GRADERS)}")
    return found


_NOT_JSON = object()
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.S)


def _json(text: str) -> Any:
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced[1] if fenced else text)
    except ValueError:
        return _NOT_JSON


def _call_key(call: dict[str, Any]) -> str:
    arguments = call.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # else compared as the text it is
            arguments = json.loads(arguments)
    return json.dumps({"name": call.get("name"), "arguments": arguments}, sort_keys=True, ensure_ascii=False)


@cache
def _chrf() -> Any:
    try:
        from sacrebleu.metrics.chrf import CHRF
    except ImportError:
        raise DataError("the chrf grader needs sacrebleu", hint="pip install 'ftcli[eval]'") from None
    return CHRF()


class _RougeTokens:
    def tokenize(self, text: str) -> list[str]:
        return tokens(text)


@cache
def _rouge() -> Any:
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        raise DataError("the rouge-l grader needs rouge-score", hint="pip install 'ftcli[eval]'") from None
    return RougeScorer(["rougeL"], tokenizer=_RougeTokens())
