"""Grading: one grader definition, one dataset item and one model sample → a reward, as OpenAI's graders do.

The engine is pure: model graders ask a `Judge` (a chat completion by whatever model the caller can reach: the
server's own inference, an OpenAI-protocol backend), python graders a `PythonRunner` (the sandbox in
python_sandbox.py), cosine an `Embedder`. Without the one it needs, that grader errors for the sample.

A grader that fails on one sample (a missing item field, a judge's unparseable answer, a python exception) gives
reward 0.0, with the failure named by OpenAI's error kind (RunGraderResponse's metadata.errors): training goes on
and reports it. A multi grader with a failing sub-grader scores 0.0 too, rather than computing its formula over a
made-up sub-reward. An invalid definition never gets here: parse_grader refuses it first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ftcli.data.graders import similarity
from ftcli.data.graders.expression import ExpressionError, evaluate, parse_expression
from ftcli.data.graders.python_sandbox import SandboxUnavailableError
from ftcli.data.graders.spec import (
    Embedder,
    Grader,
    GraderError,
    InputAudio,
    InputImage,
    LabelModelGrader,
    Message,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from ftcli.data.graders.template import TemplateError, render

ErrorKind = Literal[
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
]
ERROR_KINDS: tuple[ErrorKind, ...] = ErrorKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Sample:
    """The model's answer: its text, the text parsed as JSON (None when it isn't JSON), its tool calls."""

    output_text: str
    output_json: Any | None = None
    output_tools: Sequence[dict[str, Any]] = ()

    @classmethod
    def of_text(cls, text: str, tools: Sequence[dict[str, Any]] = ()) -> Sample:
        """A sample from the answer's text: output_json filled when the text is valid JSON (as OpenAI does)."""
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # "[" * 100000 nests past the parser's recursion limit
            parsed = None
        return cls(output_text=text, output_json=parsed, output_tools=tuple(tools))

    def as_dict(self) -> dict[str, Any]:
        """What a python grader gets as `sample`."""
        return {
            "output_text": self.output_text,
            "output_json": self.output_json,
            "output_tools": list(self.output_tools),
        }


@dataclass(frozen=True)
class JudgeReply:
    """A judge's answer with the tokens it took (a judge may return a bare string instead)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Judge(Protocol):
    """A chat completion for score_model / label_model graders. `messages` are OpenAI chat messages (text content
    as a string; images and audio as chat content parts); `sampling` holds chat-completion parameters: the grader's
    sampling_params (temperature, top_p, seed, max_completion_tokens, reasoning_effort) and a `response_format`
    asking for the grader's JSON answer. Raise GraderError when the model can't answer (not served, failed);
    JudgeRefused when it refused."""

    def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str | JudgeReply: ...


class PythonRunner(Protocol):
    """Runs a python grader's `grade(sample, item)` (the sandbox); a GraderError is the grader's own failure."""

    def __call__(self, source: str, sample: dict[str, Any], item: dict[str, Any]) -> float: ...


class JudgeRefused(GraderError):
    """The judge model refused to grade."""


@dataclass(frozen=True)
class Failure:
    kind: ErrorKind
    grader: str  # the grader's name (a multi grader's sub-grader: its key)
    message: str


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class GradeResult:
    """What OpenAI's grader run reports: the reward, each sub-grader's (multi), the failures by kind, and the
    judges' token usage per model."""

    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()
    token_usage: dict[str, TokenUsage] = field(default_factory=dict)
    judge_model: str | None = None  # the model a score_model / label_model grader asked

    @property
    def errors(self) -> list[str]:
        return [f"{failure.grader}: {failure.message}" for failure in self.failures]

    @property
    def kinds(self) -> set[ErrorKind]:
        return {failure.kind for failure in self.failures}


def grade(
    grader: Grader,
    item: dict[str, Any],
    sample: Sample,
    *,
    judge: Judge | None = None,
    python: PythonRunner | None = None,
    embedder: Embedder | None = None,
) -> GradeResult:
    """`sample` graded against `item` by `grader` (a definition parse_grader accepted)."""
    tools = _Tools(judge, python, embedder)
    if not isinstance(grader, MultiGrader):
        return _grade_one(grader, grader.name, item, sample, tools)
    results = {name: _grade_one(sub, name, item, sample, tools) for name, sub in grader.graders.items()}
    sub_rewards = {name: result.reward for name, result in results.items()}
    failures = tuple(failure for result in results.values() for failure in result.failures)
    usage: dict[str, TokenUsage] = {}
    for result in results.values():
        for model, used in result.token_usage.items():
            usage[model] = usage.get(model, TokenUsage()) + used
    judges = {result.judge_model for result in results.values() if result.judge_model}
    reward = 0.0
    if not failures:
        try:
            tree = parse_expression(grader.calculate_output, names=set(grader.graders))
        except GraderError as exc:  # parse_grader refuses these: only a definition built around it gets here
            failures = (Failure("formula_parse_error", grader.name, exc.message),)
        else:
            try:
                reward = evaluate(tree, sub_rewards)
            except ExpressionError as exc:
                failures = (Failure("other_error", grader.name, exc.message),)
    return GradeResult(
        reward=reward if not failures else 0.0,
        sub_rewards=sub_rewards,
        failures=failures,
        token_usage=usage,
        judge_model=judges.pop() if len(judges) == 1 else None,
    )


def grade_batch(
    grader: Grader,
    items: Sequence[dict[str, Any]],
    samples: Sequence[Sample],
    *,
    judge: Judge | None = None,
    python: PythonRunner | None = None,
    embedder: Embedder | None = None,
    workers: int = 4,
) -> list[GradeResult]:
    """`samples[i]` graded against `items[i]`, in order; graders that wait on a judge or a sandbox run `workers`
    at a time (the rest is quick arithmetic on strings and runs in turn)."""
    if len(items) != len(samples):
        raise ValueError(f"{len(items)} items for {len(samples)} samples")

    def one(pair: tuple[dict[str, Any], Sample]) -> GradeResult:
        return grade(grader, pair[0], pair[1], judge=judge, python=python, embedder=embedder)

    pairs = list(zip(items, samples, strict=True))
    if workers <= 1 or len(pairs) <= 1 or not _waits(grader):
        return [one(pair) for pair in pairs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, pairs))


def _waits(grader: Grader) -> bool:
    if isinstance(grader, MultiGrader):
        return any(_waits(sub) for sub in grader.graders.values())
    return isinstance(grader, ScoreModelGrader | LabelModelGrader | PythonGrader)


@dataclass(frozen=True)
class _Tools:
    judge: Judge | None
    python: PythonRunner | None
    embedder: Embedder | None


def _grade_one(grader: Grader, name: str, item: dict[str, Any], sample: Sample, tools: _Tools) -> GradeResult:
    try:
        if isinstance(grader, StringCheckGrader):
            return GradeResult(reward=string_check(grader, item, sample))
        if isinstance(grader, TextSimilarityGrader):
            text, reference = render(grader.input, item, sample), render(grader.reference, item, sample)
            score = similarity.similarity(grader.evaluation_metric, text, reference, embedder=tools.embedder)
            return GradeResult(reward=score)
        if isinstance(grader, PythonGrader):
            return GradeResult(reward=_run_python(grader, item, sample, tools.python))
        if isinstance(grader, ScoreModelGrader | LabelModelGrader):
            return _ask_judge(grader, item, sample, tools.judge)
    except TemplateError as exc:
        return _failed(exc.kind, name, exc.message)  # type: ignore[arg-type]
    except _Failed as exc:
        return _failed(exc.kind, name, exc.message, judge_model=exc.judge_model, usage=exc.usage)
    except GraderError as exc:  # a metric that can't run here (no embedder, a library missing)
        return _failed("other_error", name, exc.message)
    raise GraderError(f"{name}: a {grader.type} grader can't be nested here")


def _failed(
    kind: ErrorKind,
    name: str,
    message: str,
    *,
    judge_model: str | None = None,
    usage: dict[str, TokenUsage] | None = None,
) -> GradeResult:
    return GradeResult(
        reward=0.0, failures=(Failure(kind, name, message),), judge_model=judge_model, token_usage=usage or {}
    )


class _Failed(Exception):  # noqa: N818 (internal: carries a failure's kind out of a helper)
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        judge_model: str | None = None,
        usage: dict[str, TokenUsage] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.judge_model, self.usage = kind, message, judge_model, usage


# --- string_check --------------------------------------------------------------------------------------------------


def string_check(grader: StringCheckGrader, item: dict[str, Any], sample: Sample) -> float:
    """OpenAI's operations: eq / ne compare exactly; like: the input contains the reference; ilike: the same
    without regard to case."""
    text, reference = render(grader.input, item, sample), render(grader.reference, item, sample)
    if grader.operation == "eq":
        return float(text == reference)
    if grader.operation == "ne":
        return float(text != reference)
    if grader.operation == "like":
        return float(reference in text)
    return float(reference.casefold() in text.casefold())


# --- python --------------------------------------------------------------------------------------------------------


def _run_python(grader: PythonGrader, item: dict[str, Any], sample: Sample, runner: PythonRunner | None) -> float:
    if runner is None:
        raise _Failed("python_grader_server_error", "python graders need the sandbox, and none is available here")
    try:
        value = runner(grader.source, sample.as_dict(), item)
    except GraderError as exc:
        raise _Failed("python_grader_runtime_error", exc.message) from None
    except SandboxUnavailableError:
        raise  # this machine can't run python graders at all: not one sample's reward of 0
    except Exception as exc:  # noqa: BLE001 (the sandbox itself failed: reported, training goes on)
        raise _Failed("python_grader_server_error", f"{type(exc).__name__}: {exc}"[:500]) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Failed("python_grader_runtime_error", f"grade() returned {value!r}, not a finite number")
    return float(value)


# --- score_model and label_model -----------------------------------------------------------------------------------


def _ask_judge(
    grader: ScoreModelGrader | LabelModelGrader, item: dict[str, Any], sample: Sample, judge: Judge | None
) -> GradeResult:
    if judge is None:
        raise _Failed("model_grader_server_error", f"no judge model can be reached here to run {grader.model!r}")
    messages = [chat_message(message, item, sample) for message in grader.input]
    if isinstance(grader, ScoreModelGrader):
        low, high = grader.score_range
        instruction = f'Answer with only a JSON object {{"result": <a number from {low:g} to {high:g}>}}.'
        schema: dict[str, Any] = {"type": "number"}
    else:
        instruction = f'Answer with only a JSON object {{"result": <one of {json.dumps(grader.labels)}>}}.'
        schema = {"type": "string", "enum": grader.labels}
    _append_instruction(messages, instruction)
    sampling = _sampling(grader, schema)
    try:
        reply = judge(grader.model, messages, sampling)
    except JudgeRefused as exc:
        raise _Failed("model_grader_refusal_error", exc.message, judge_model=grader.model) from None
    except GraderError as exc:
        raise _Failed("model_grader_server_error", exc.message, judge_model=grader.model) from None
    except Exception as exc:  # noqa: BLE001 (a judge's transport or model failed: reported, training goes on)
        message = f"{type(exc).__name__}: {exc}"[:500]
        raise _Failed("model_grader_server_error", message, judge_model=grader.model) from None
    text = reply.text if isinstance(reply, JudgeReply) else reply
    usage = (
        {grader.model: TokenUsage(reply.prompt_tokens, reply.completion_tokens)}
        if isinstance(reply, JudgeReply)
        else {}
    )
    try:
        if isinstance(grader, ScoreModelGrader):
            low, high = grader.score_range
            reward = min(max(parse_score(text), low), high)  # OpenAI truncates a score to the range
        else:
            reward = float(parse_label(text, grader.labels) in grader.passing_labels)
    except ValueError as exc:
        raise _Failed("model_grader_parse_error", str(exc), judge_model=grader.model, usage=usage) from None
    return GradeResult(reward=reward, token_usage=usage, judge_model=grader.model)


def chat_message(message: Message, item: dict[str, Any], sample: Sample) -> dict[str, Any]:
    """A grader's input message, its templates filled, as an OpenAI chat message."""
    content = message.content
    if isinstance(content, str):
        return {"role": message.role, "content": render(content, item, sample)}
    parts = content if isinstance(content, list) else [content]
    rendered: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, InputImage):
            url: dict[str, Any] = {"url": render(part.image_url, item, sample)}
            if part.detail is not None:
                url["detail"] = part.detail
            rendered.append({"type": "image_url", "image_url": url})
        elif isinstance(part, InputAudio):
            rendered.append({"type": "input_audio", "input_audio": part.input_audio.model_dump()})
        else:
            rendered.append({"type": "text", "text": render(part.text, item, sample)})
    if all(part["type"] == "text" for part in rendered):
        return {"role": message.role, "content": "\n".join(part["text"] for part in rendered)}
    return {"role": message.role, "content": rendered}


def _append_instruction(messages: list[dict[str, Any]], instruction: str) -> None:
    """The answer format, at the end of the last message (a further message would break the strict role order
    some chat templates insist on)."""
    if not messages:
        messages.append({"role": "user", "content": instruction})
        return
    last = messages[-1]
    if isinstance(last["content"], str):
        last["content"] = f"{last['content']}\n\n{instruction}"
    else:
        last["content"] = [*last["content"], {"type": "text", "text": instruction}]


def _sampling(grader: ScoreModelGrader | LabelModelGrader, result: dict[str, Any]) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    params = grader.sampling_params if isinstance(grader, ScoreModelGrader) else None
    if params is not None:
        chosen = params.model_dump(exclude_none=True)
        if "max_completions_tokens" in chosen:  # the grader's name for chat completions' max_completion_tokens
            chosen["max_completion_tokens"] = chosen.pop("max_completions_tokens")
        sampling.update(chosen)
    sampling["response_format"] = {
        "type": "json_schema",
        "json_schema": {
            "name": "grade",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"result": result},
                "required": ["result"],
                "additionalProperties": False,
            },
        },
    }
    return sampling


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def _json_answer(text: str) -> Any:
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced[1] if fenced else text)
    except (ValueError, RecursionError):
        return None


def parse_score(text: str) -> float:
    """A judge's score: a JSON object's `result` (or `score`), a JSON number, or a text with exactly one number
    in it ("Score: 0.8"); a ValueError otherwise (a text with several numbers is ambiguous, not guessed at)."""
    answer = _json_answer(text)
    if isinstance(answer, dict):
        answer = next((answer[key] for key in ("result", "score") if key in answer), None)
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        value = float(answer)
    else:
        numbers = _NUMBER.findall(text)
        if len(numbers) != 1:
            raise ValueError(f"the judge's answer holds no single score: {text[:200]!r}")
        value = float(numbers[0])
    if not math.isfinite(value):
        raise ValueError(f"the judge's score is not a finite number: {text[:200]!r}")
    return value


def parse_label(text: str, labels: Sequence[str]) -> str:
    """A judge's label: a JSON object's `result` (or `label`), a JSON string, the bare label (case aside), or a text
    in which exactly one of the labels appears as a word; a ValueError otherwise."""
    answer = _json_answer(text)
    if isinstance(answer, dict):
        answer = next((answer[key] for key in ("result", "label") if key in answer), None)
    candidates = [answer] if isinstance(answer, str) else []
    candidates.append(text.strip().strip("\"'`.").strip())
    by_fold: Mapping[str, str] = {label.casefold(): label for label in labels}
    for candidate in candidates:
        if candidate in labels:
            return candidate
        if candidate.casefold() in by_fold:
            return by_fold[candidate.casefold()]
    mentioned = [label for label in labels if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)]
    if len(mentioned) == 1:
        return mentioned[0]
    raise ValueError(f"the judge's answer is not one of the labels {list(labels)}: {text[:200]!r}")
