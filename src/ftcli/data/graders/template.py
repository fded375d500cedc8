"""OpenAI's grader templates: `{{item.x}}` and `{{sample.output_text}}` in a grader's strings, filled per sample.

As OpenAI's graders guide has it: a variable is `{{ namespace.variable }}` (spaces inside the braces allowed), the
only namespaces are `item` (the dataset record) and `sample` (the model's answer: `output_text`, `output_json`,
`output_tools`), and nested values are reached with a JSON-path-like syntax (`item.a.b`, `item.list[0]`,
`item.list.0`). A string is put in as it is; any other value (an object, a list, a number, true, null) as its JSON,
which is what a judge model needs to read it. A variable the item or the sample doesn't have is an error for that
sample, never an empty string: a grader comparing against "" would hand out rewards for nothing.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ftcli.data.graders.spec import (
    GraderError,
    InputImage,
    InputText,
    LabelModelGrader,
    Message,
    MultiGrader,
    OutputText,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)

if TYPE_CHECKING:
    from ftcli.data.graders.engine import Sample
    from ftcli.data.graders.spec import Grader

# no braces inside: a linear scan, where `(.*?)` rescanned the rest of the text after each "{{" without a "}}"
PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
MAX_TEMPLATE_LENGTH = 100_000  # characters of one template string of a grader
MAX_RENDERED_LENGTH = 1_000_000  # characters of one template filled for a sample
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")  # a key, or an [index]
SAMPLE_VARIABLES = ("output_text", "output_json", "output_tools")
Path = tuple[str, ...]


class TemplateError(GraderError):
    """A variable that can't be filled for this sample (the item lacks the field, the answer isn't JSON)."""

    def __init__(self, message: str, *, kind: str = "invalid_variable_error") -> None:
        super().__init__(message)
        self.kind = kind  # OpenAI's name for the failure (RunGraderResponse's metadata.errors)


def parse_variable(expression: str) -> tuple[str, Path]:
    """`item.a[0].b` → ("item", ("a", "0", "b")); a ValueError says what is wrong with it."""
    text = expression.strip()
    segments: list[str] = []
    for dotted in text.split("."):
        matches = list(_SEGMENT.finditer(dotted))
        if not matches or "".join(m.group(0) for m in matches) != dotted or matches[0].group(2) is not None:
            raise ValueError(f"{{{{{text}}}}}: {dotted!r} is not a name, a name[index] or an index")
        segments.extend(m.group(1) or m.group(2) for m in matches)
    namespace, path = segments[0], tuple(segments[1:])
    if namespace not in ("item", "sample"):
        raise ValueError(f"{{{{{text}}}}}: the namespace is item or sample, not {namespace!r}")
    if not path:
        raise ValueError(f"{{{{{text}}}}}: name a variable inside {namespace} ({namespace}.something)")
    if namespace == "sample":
        if path[0] not in SAMPLE_VARIABLES:
            raise ValueError(f"{{{{{text}}}}}: a sample has {', '.join(SAMPLE_VARIABLES)}, not {path[0]!r}")
        if path[0] == "output_text" and len(path) > 1:
            raise ValueError(f"{{{{{text}}}}}: output_text is a string, with nothing inside it")
    return namespace, path


def check_template(text: str, *, where: str) -> None:
    """Every variable in `text` is one the engine can fill (item.…, sample.output_*), and `text` is at most
    MAX_TEMPLATE_LENGTH characters: else a GraderError."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise GraderError(f"{where}: a template of at most {MAX_TEMPLATE_LENGTH} characters, got {len(text)}")
    for match in PLACEHOLDER.finditer(text):
        try:
            parse_variable(match.group(1))
        except ValueError as exc:
            raise GraderError(f"{where}: {exc}") from None


def render(template: str, item: dict[str, Any], sample: Sample | None) -> str:
    """`template` with each variable replaced by its value (strings as they are, other values as JSON); a variable
    this item or sample lacks raises a TemplateError naming it, and so does a result over MAX_RENDERED_LENGTH
    characters (a variable repeated over a large field would otherwise fill memory)."""
    rendered = len(template)

    def value_of(match: re.Match[str]) -> str:
        try:
            namespace, path = parse_variable(match.group(1))
        except ValueError as exc:
            raise TemplateError(str(exc)) from None
        if namespace == "item":
            found = lookup(item, path, what="the item")
        else:
            found = _sample_value(sample, path, match.group(0))
        text = found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)
        nonlocal rendered
        rendered += len(text)
        if rendered > MAX_RENDERED_LENGTH:
            raise TemplateError(
                f"the filled template is over {MAX_RENDERED_LENGTH} characters (its variables' values are too large)",
                kind="other_error",
            )
        return text

    return PLACEHOLDER.sub(value_of, template)


def _sample_value(sample: Sample | None, path: Path, written: str) -> Any:
    if sample is None:
        raise TemplateError(f"{written}: there is no sample here (only item variables can be filled)")
    if path[0] == "output_json" and sample.output_json is None:
        raise TemplateError(f"{written}: the model's answer is not JSON", kind="sample_parse_error")
    whole = {
        "output_text": sample.output_text,
        "output_json": sample.output_json,
        "output_tools": list(sample.output_tools),
    }
    return lookup(whole, path, what="the sample")


def lookup(value: Any, path: Path, *, what: str) -> Any:
    """The value at `path` inside `value`; a TemplateError names the first step that isn't there."""
    for depth, key in enumerate(path):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            so_far = ".".join(path[: depth + 1])
            raise TemplateError(f"{what} has no field {so_far!r}")
    return value


def has_reference(item: dict[str, Any], reference: str) -> bool:
    """Whether `item` has the field `reference` (one of `references(grader)`, e.g. "answer" or "meta.id")."""
    try:
        lookup(item, tuple(reference.split(".")), what="the item")
    except TemplateError:
        return False
    return True


def references(grader: Grader) -> set[str]:
    """The item fields the grader (and its sub-graders) use, as dotted paths: {{item.a.b}} → "a.b",
    {{item.list[0]}} → "list.0". Python graders read the item in code: they name none."""
    if isinstance(grader, MultiGrader):
        return set().union(*(references(sub) for sub in grader.graders.values()))
    found: set[str] = set()
    for _field, text in template_fields(grader):
        for match in PLACEHOLDER.finditer(text):
            try:
                namespace, path = parse_variable(match.group(1))
            except ValueError:
                continue  # a grader that passed parse_grader has none
            if namespace == "item":
                found.add(".".join(path))
    return found


def template_fields(grader: Grader) -> list[tuple[str, str]]:
    """(JSON path under the grader, text) of each string of the grader that may hold variables."""
    if isinstance(grader, StringCheckGrader | TextSimilarityGrader):
        return [("input", grader.input), ("reference", grader.reference)]
    if isinstance(grader, ScoreModelGrader | LabelModelGrader):
        return [pair for index, message in enumerate(grader.input) for pair in message_fields(message, index)]
    return []


def message_fields(message: Message, index: int) -> list[tuple[str, str]]:
    where = f"input[{index}].content"
    content = message.content
    if isinstance(content, str):
        return [(where, content)]
    if isinstance(content, list):
        return [pair for n, part in enumerate(content) for pair in _part_fields(part, f"{where}[{n}]")]
    return _part_fields(content, where)


def _part_fields(part: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(part, InputText | OutputText):
        return [(f"{where}.text", part.text)]
    if isinstance(part, InputImage):
        return [(f"{where}.image_url", part.image_url)]
    return []  # audio: base64 data, no template
