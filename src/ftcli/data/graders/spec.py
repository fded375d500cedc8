"""OpenAI's grader definitions (the schemas GraderStringCheck, GraderTextSimilarity, GraderPython, GraderScoreModel,
GraderLabelModel and GraderMulti of OpenAI's spec, as openai-python's `types/graders` has them) as pydantic models,
one union discriminated on `type`.

Exactly the spec's fields: an unknown key or a wrong type is refused (a typo'd `refrence` would otherwise grade
against nothing), with the JSON path of the field in the message. `pass_threshold` is accepted where OpenAI's eval
variants of the graders have it (text_similarity, python, score_model). Beyond the schema, `parse_grader` checks what
would only fail later: every `{{…}}` template names a variable the engine can fill, a score range is two numbers low
to high, passing labels are labels, a multi grader's formula parses and names only its own sub-graders, `cosine`
has an embedding function to run with and `meteor` the WordNet it needs.

A multi grader's `graders` is an object of name → grader, as OpenAI's guides and RFT jobs send it (the formula
refers to those names); a list of graders (the spec's example) or one grader (the spec's schema) is taken too, each
then named by its `name`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator

from ftcli.data.errors import DataError

MAX_LABELS = 256  # labels (and passing labels) of a label_model grader
MAX_SUB_GRADERS = 32  # a multi grader's graders, run one after another for each sample


class GraderError(DataError):
    """A grader definition that is not valid (the message names the field by its JSON path), or a grader that
    could not grade one sample (a python grader's exception, a judge that is not there)."""


# text → one vector per text; cosine similarity needs one (OpenAI embeds with its own model: ftcli never downloads)
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- the content of a model grader's messages (EvalItem in the spec) -------------------------------------------


class InputText(_Strict):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: dict[str, Any] | None = None  # the spec's InputTextContent has it; no meaning here


class OutputText(_Strict):
    type: Literal["output_text"]
    text: str


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str
    detail: str | None = None
    file_id: str | None = None  # in the spec's own score_model example


class AudioData(_Strict):
    data: str
    format: Literal["mp3", "wav"]


class InputAudio(_Strict):
    type: Literal["input_audio"]
    input_audio: AudioData


ContentPart = Annotated[InputText | OutputText | InputImage | InputAudio, Field(discriminator="type")]


def _content_kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "parts" if isinstance(value, list) else "part"


Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[ContentPart, Tag("part")] | Annotated[list[ContentPart], Tag("parts")],
    Discriminator(_content_kind),
]


class Message(_Strict):
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    type: Literal["message"] | None = None


class SamplingParams(_Strict):
    seed: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    max_completions_tokens: Annotated[int, Field(ge=1)] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None


# --- the graders -------------------------------------------------------------------------------------------------


class StringCheckGrader(_Strict):
    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


Metric = Literal[
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class TextSimilarityGrader(_Strict):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Metric
    pass_threshold: float | None = None


class PythonGrader(_Strict):
    type: Literal["python"]
    name: str
    source: str  # its size and syntax: python_sandbox.check_python_grader
    image_tag: str | None = None
    pass_threshold: float | None = None


class ScoreModelGrader(_Strict):
    type: Literal["score_model"]
    name: str
    model: str
    input: list[Message]
    range: list[float] | None = None  # [low, high]; OpenAI's default is [0, 1]
    sampling_params: SamplingParams | None = None
    pass_threshold: float | None = None

    @field_validator("range")
    @classmethod
    def _low_to_high(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if len(value) != 2:  # noqa: PLR2004 (a range is two numbers)
                raise ValueError(f"a range is two numbers [low, high], got {len(value)}")
            if not all(math.isfinite(v) for v in value) or value[0] >= value[1]:
                raise ValueError(f"a range is two finite numbers, low below high, got {value}")
        return value

    @property
    def score_range(self) -> tuple[float, float]:
        low, high = self.range or DEFAULT_RANGE
        return low, high


DEFAULT_RANGE = (0.0, 1.0)


class LabelModelGrader(_Strict):
    type: Literal["label_model"]
    name: str
    model: str
    input: list[Message]
    labels: Annotated[list[str], Field(min_length=1, max_length=MAX_LABELS)]
    passing_labels: Annotated[list[str], Field(min_length=1, max_length=MAX_LABELS)]

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        twice = sorted(label for label, count in Counter(value).items() if count > 1)
        if twice:
            raise ValueError(f"each label once; repeated: {', '.join(map(repr, twice))}")
        return value


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Strict):
    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader]
    calculate_output: str

    @field_validator("graders", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        """The spec's list form and single-grader form, named by each grader's `name`."""
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            value = [value]
        if isinstance(value, list):
            named: dict[str, Any] = {}
            for index, grader in enumerate(value):
                name = grader.get("name") if isinstance(grader, dict) else None
                if not isinstance(name, str):
                    raise ValueError(f"graders[{index}] has no name to be referred to by in calculate_output")
                if name in named:
                    raise ValueError(f"two graders are named {name!r}: calculate_output can't tell them apart")
                named[name] = grader
            value = named
        if isinstance(value, dict) and len(value) > MAX_SUB_GRADERS:  # before each one is validated
            raise ValueError(f"a multi grader has at most {MAX_SUB_GRADERS} graders, got {len(value)}")
        return value

    @field_validator("graders")
    @classmethod
    def _some(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a multi grader needs at least one grader")
        return value


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | MultiGrader,
    Field(discriminator="type"),
]
GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")

_GRADER: TypeAdapter[Grader] = TypeAdapter(Grader)


def parse_grader(obj: Any, *, where: str = "grader", embedder: Embedder | None = None) -> Grader:
    """The grader `obj` (parsed JSON) defines, checked through: a GraderError names the first problem by its JSON
    path under `where`. `embedder`: what `cosine` embeds with; without one, cosine is refused."""
    if not isinstance(obj, dict):
        raise GraderError(f"{where}: a grader is a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in GRADER_TYPES:
        raise GraderError(
            f"{where}.type: one of {', '.join(GRADER_TYPES)}, got {kind!r}",
            hint="see OpenAI's graders guide for each type's fields",
        )
    try:
        grader = _GRADER.validate_python(obj)
    except ValidationError as exc:
        raise GraderError(_describe(exc, obj, where)) from None
    _check_meaning(grader, where, embedder)
    return grader


def grader_json(grader: Grader) -> dict[str, Any]:
    """The grader as JSON, with the fields its definition set (what `validate` answers with)."""
    dumped: dict[str, Any] = _GRADER.dump_python(grader, mode="json", exclude_unset=True)
    return dumped


def _describe(exc: ValidationError, obj: Any, where: str) -> str:
    """Pydantic's first error with the JSON path in the document itself (union tags left out of the path)."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo'd key explains the rest
    path, node = where, obj
    for part in first["loc"]:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            path, node = f"{path}.{part}", node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = f"{path}[{part}]", node[part]
        elif first["type"] in {"missing", "extra_forbidden"} and isinstance(part, str) and part == first["loc"][-1]:
            path = f"{path}.{part}"
        # else: a union's tag (the grader type, 'text', 'part'), not a step in the document
    message = {
        "missing": "required, missing",
        "extra_forbidden": "not a field of this grader type (OpenAI's spec has no such key)",
    }.get(first["type"], first["msg"].removeprefix("Value error, "))
    return f"{path}: {message}"


def _check_meaning(grader: Grader, where: str, embedder: Embedder | None) -> None:
    from ftcli.data.graders import similarity, template
    from ftcli.data.graders.expression import parse_expression

    if isinstance(grader, MultiGrader):
        for name, sub in grader.graders.items():
            _check_meaning(sub, f"{where}.graders.{name}", embedder)
        parse_expression(grader.calculate_output, names=set(grader.graders), where=f"{where}.calculate_output")
        return
    for field, text in template.template_fields(grader):
        template.check_template(text, where=f"{where}.{field}")
    if isinstance(grader, LabelModelGrader):
        labels = set(grader.labels)
        unknown = [label for label in grader.passing_labels if label not in labels]
        if unknown:
            raise GraderError(f"{where}.passing_labels: not among labels: {', '.join(map(repr, unknown))}")
    if isinstance(grader, TextSimilarityGrader):
        if grader.evaluation_metric == "cosine" and embedder is None:
            raise GraderError(
                f"{where}.evaluation_metric: cosine compares embeddings, and no embedding model is configured here",
                hint="use another metric (fuzzy_match, bleu, rouge_l, ...), or configure an embedding model",
            )
        reason = similarity.unavailable(grader.evaluation_metric)
        if reason:
            raise GraderError(f"{where}.evaluation_metric: {reason}")
    if isinstance(grader, PythonGrader):
        _check_python(grader, where)


def _check_python(grader: PythonGrader, where: str) -> None:
    """Size, syntax and a `grade(sample, item)` function, without running any of the code (the sandbox's check)."""
    from ftcli.data.graders.python_sandbox import check_python_grader

    check_python_grader(grader.source, where=f"{where}.source")
