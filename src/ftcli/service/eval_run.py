"""`ftcli eval` as an operation: ask every model every case (in parallel, each on its own backend), keep the answers in
a cache per model and settings so a rerun or an added model asks only what is missing, grade them (ftcli's own
graders, and OpenAI graders through the engine reinforcement training uses), and gather one `EvalReport` (means with
95 % intervals, wins/ties/losses against the first model, the worst cases). And `chat --eval`'s quick score
(`score_answers`): one model asked each case once, graded by two of the same graders. Nothing here prints."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.data.eval import stats
from ftcli.data.eval.cases import EvalCase, Problem
from ftcli.data.eval.graders import GRADERS, Answer, Grader, Reference
from ftcli.service.chat import ChatParams, complete, reply
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from openai import OpenAI

    from ftcli.data.graders.engine import Sample
    from ftcli.data.graders.spec import Grader as GraderDefinition

WORST_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model to evaluate, on the default backend or on a profile's (`PROFILE:MODEL`, e.g. `local:ft:…`)."""

    label: str  # as the user wrote it
    model: str
    profile: str | None = None


def parse_model(text: str, profiles: set[str]) -> ModelSpec:
    head, sep, rest = text.partition(":")
    if sep and rest and head != "ft" and (head in profiles or head == "together"):
        return ModelSpec(text, rest, head)
    return ModelSpec(text, text)


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int | None = None
    seed: int | None = None

    def params(self, model: str, tools: list[Any] | None) -> ChatParams:
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if self.seed is not None:
            extra["seed"] = self.seed
        return ChatParams(model, temperature=self.temperature, max_tokens=self.max_tokens, extra=extra)


class AnswerCache:
    """One model's answers under one backend and sampling, by case key, in a JSONL file that only grows."""

    def __init__(self, folder: Path, backend_id: str, model: str, sampling: Sampling) -> None:
        identity = json.dumps([backend_id, model, sampling.temperature, sampling.max_tokens, sampling.seed])
        self.path = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.jsonl"
        self._lock = threading.Lock()
        self.answers: dict[str, Answer] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = Answer(entry["text"], tuple(entry.get("calls") or ()))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by an interrupted run: asked again

    def put(self, key: str, answer: Answer) -> None:
        line = json.dumps({"key": key, "text": answer.text, "calls": list(answer.calls)}, ensure_ascii=False)
        with self._lock:
            self.answers[key] = answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(line + "\n")


@dataclass(frozen=True, slots=True)
class GraderResult:
    summary: stats.Summary
    versus_first: stats.Comparison | None  # None for the first model


@dataclass
class ModelResult:
    spec: ModelSpec
    answers: list[Answer]
    scores: dict[str, list[float | None]]  # grader → one score per case
    results: dict[str, GraderResult] = field(default_factory=dict)
    asked: int = 0  # requests made this run (the rest came from the cache)
    # OpenAI graders' failures on single answers (a missing item field, a python error, a judge's unreadable reply):
    # the answer scores 0, as training scores it, and each is named here
    grader_errors: list[GraderFailure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GraderFailure:
    grader: str
    line: int  # the case's line in the data file
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"grader": self.grader, "line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class OpenAIGrader:
    """A grader of OpenAI's grader language (`eval --grader-file`), reported under its own `name`."""

    name: str
    definition: GraderDefinition


@dataclass
class EvalReport:
    data: str
    cases: list[EvalCase]
    problems: list[Problem]
    graders: list[str]
    models: list[ModelResult]
    thresholds: dict[str, float] = field(default_factory=dict)  # --min-score grader=S

    def failures(self) -> list[str]:
        """Each model and grader whose mean falls below its --min-score, in words."""
        found = []
        for model in self.models:
            for name, minimum in self.thresholds.items():
                mean = model.results[name].summary.mean
                if mean is None or mean < minimum:
                    shown = "no score" if mean is None else f"{mean:.4f}"
                    found.append(f"{model.spec.label}: {name} {shown} < {minimum:g}")
        return found

    @property
    def exit_code(self) -> int:
        return 1 if self.failures() else 0

    def worst(self, model: ModelResult, grader: str, count: int = WORST_SHOWN) -> list[int]:
        """Indexes of the cases where `model` scored lowest on `grader`."""
        scored = [(s, i) for i, s in enumerate(model.scores[grader]) if s is not None]
        return [i for _, i in sorted(scored)[:count]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "cases": len(self.cases),
            "problems": [{"line": p.line, "message": p.message} for p in self.problems],
            "graders": self.graders,
            "models": [
                {
                    "model": m.spec.label,
                    "asked": m.asked,
                    **({"grader_errors": [e.to_dict() for e in m.grader_errors]} if m.grader_errors else {}),
                    "graders": {
                        name: {
                            **result.summary.to_dict(),
                            **({"versus_first": result.versus_first.to_dict()} if result.versus_first else {}),
                        }
                        for name, result in m.results.items()
                    },
                }
                for m in self.models
            ],
            "min_score": self.thresholds,
            "failures": self.failures(),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per case and model: the CSV of `--out`."""
        out = []
        for model in self.models:
            for index, case in enumerate(self.cases):
                answer = model.answers[index]
                row: dict[str, Any] = {
                    "line": case.line,
                    "model": model.spec.label,
                    "reference": case.reference,
                    "answer": answer.text,
                    "answer_tool_calls": json.dumps(list(answer.calls), ensure_ascii=False) if answer.calls else "",
                }
                row.update({name: model.scores[name][index] for name in self.graders})
                out.append(row)
        return out


@dataclass(frozen=True, slots=True)
class Judge:
    """A model that compares each answer with the reference, asked in both orders (position bias cancels out)."""

    spec: ModelSpec
    rubric: str | None = None  # what makes an answer better, from `--rubric FILE`


JUDGE = "judge"
JUDGE_SYSTEM = (
    "You compare two answers to the same conversation. Judge which answer serves the user better: correct, "
    "complete, and as the conversation asks. Reply with one word: 1 if answer 1 is better, 2 if answer 2 is "
    "better, or tie."
)


def run_eval(
    cases: list[EvalCase],
    problems: list[Problem],
    specs: list[ModelSpec],
    graders: list[Grader],
    *,
    data: str,
    client_for: Callable[[ModelSpec], tuple[OpenAI, str]],
    cache_folder: Path,
    sampling: Sampling | None = None,
    options: dict[str, Any] | None = None,
    thresholds: dict[str, float] | None = None,
    parallel: int = 4,
    on_answer: Callable[[], None] | None = None,
    judge: Judge | None = None,
    openai_graders: list[OpenAIGrader] | None = None,
    spec_of: Callable[[str], ModelSpec] | None = None,
) -> EvalReport:
    """`client_for(spec)` gives the client of a model's backend and that backend's id (for the cache). With a
    `judge`, a grader of that name scores each answer against the reference: 1 better, 0.5 as good, 0 worse.
    `openai_graders` score each answer by OpenAI's grader language, the case's record as `item` and the answer as
    `sample`; a score_model or label_model grader's model is asked through `client_for(spec_of(model))` (default:
    the model on the default backend)."""
    if not cases:
        raise UsageError(f"{data} has no case to evaluate", hint=f"see `ftcli check {data}`")
    openai_graders = openai_graders or []
    names = [g.name for g in graders] + [g.name for g in openai_graders] + ([JUDGE] if judge else [])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(
            f"two graders are named {', '.join(repeated)}", hint="give each grader file's grader its own 'name'"
        )
    for name in thresholds or {}:
        if name not in names:
            raise UsageError(f"--min-score names {name}, which is not among the graders", hint=", ".join(names))
    sampling = sampling or Sampling()
    results = []
    for spec in specs:
        client, backend_id = client_for(spec)
        cache = AnswerCache(cache_folder, backend_id, spec.model, sampling)
        answers, asked = _answers(client, spec, cases, cache, sampling, parallel, on_answer)
        scores = {g.name: [_grade(g, case, answer, options or {}) for case, answer in zip(cases, answers, strict=True)]
                  for g in graders}  # fmt: skip
        failures: list[GraderFailure] = []
        if openai_graders:
            grader_judge = GraderJudge(client_for, spec_of or (lambda model: ModelSpec(model, model)), cache_folder)
            for definition in openai_graders:
                scores[definition.name] = _openai_graded(definition, cases, answers, grader_judge, failures)
        if judge is not None:
            scores[JUDGE] = _judged(judge, cases, answers, client_for, cache_folder, parallel)
        results.append(ModelResult(spec, answers, scores, asked=asked, grader_errors=failures))
    first = results[0]
    for model in results:
        model.results = {
            name: GraderResult(
                stats.summarise(model.scores[name]),
                None if model is first else stats.compare(model.scores[name], first.scores[name]),
            )
            for name in names
        }
    return EvalReport(data, cases, problems, names, results, dict(thresholds or {}))


def _answers(
    client: OpenAI,
    spec: ModelSpec,
    cases: list[EvalCase],
    cache: AnswerCache,
    sampling: Sampling,
    parallel: int,
    on_answer: Callable[[], None] | None,
) -> tuple[list[Answer], int]:
    missing = [case for case in cases if case.key not in cache.answers]

    def ask(case: EvalCase) -> None:
        answer = reply(client, sampling.params(spec.model, case.tools), case.prompt)
        calls = tuple(
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in answer.tool_calls
        )
        cache.put(case.key, Answer(answer.answer, calls))
        if on_answer:
            on_answer()

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(ask, missing))  # the first failure is raised here; what was answered stays cached
    return [cache.answers[case.key] for case in cases], len(missing)


class GraderJudge:
    """The judge of OpenAI's score_model and label_model graders: a chat completion by the grader's model through
    the eval's clients (`PROFILE:MODEL` as the eval's models take it), its replies cached per backend and model as
    answers are, so a rerun asks nothing again."""

    def __init__(
        self,
        client_for: Callable[[ModelSpec], tuple[OpenAI, str]],
        spec_of: Callable[[str], ModelSpec],
        cache_folder: Path,
    ) -> None:
        self.client_for, self.spec_of, self.cache_folder = client_for, spec_of, cache_folder
        self._caches: dict[tuple[str, str], AnswerCache] = {}
        self._lock = threading.Lock()

    def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str:
        spec = self.spec_of(model)
        client, backend_id = self.client_for(spec)
        with self._lock:
            cache = self._caches.get((backend_id, spec.model))
            if cache is None:
                cache = AnswerCache(self.cache_folder, backend_id, f"grader-judge:{spec.model}", Sampling())
                self._caches[(backend_id, spec.model)] = cache
        key = hashlib.sha256(json.dumps([messages, sampling], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        if key not in cache.answers:
            cache.put(key, Answer(reply(client, judge_params(spec.model, sampling), messages).answer))
        return cache.answers[key].text


def judge_params(model: str, sampling: dict[str, Any]) -> ChatParams:
    """The engine's chat-completion parameters for a judge (the grader's sampling_params and the response_format
    of its answer) as a chat request's."""
    extra = {key: value for key, value in sampling.items() if key not in ("temperature", "max_completion_tokens")}
    temperature, length = sampling.get("temperature"), sampling.get("max_completion_tokens")
    return ChatParams(
        model,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        max_tokens=length if isinstance(length, int) else None,
        extra=extra,
    )


def answer_sample(answer: Answer) -> Sample:
    """A model's answer as a grader's `sample`: its text, the text as JSON where it is JSON, its tool calls (as
    the chat API writes them)."""
    from ftcli.data.graders.engine import Sample

    return Sample.of_text(answer.text, [{"type": "function", "function": dict(call)} for call in answer.calls])


def _openai_graded(
    grader: OpenAIGrader,
    cases: list[EvalCase],
    answers: list[Answer],
    judge: GraderJudge,
    failures: list[GraderFailure],
) -> list[float | None]:
    """Each answer's reward by the grading engine reinforcement training uses (`grade_batch`); an answer the grader
    failed on scores what training gives it (0) and its error goes to `failures`."""
    from ftcli.data.graders.engine import grade_batch
    from ftcli.data.graders.python_sandbox import run_python_grader

    results = grade_batch(
        grader.definition,
        [case.item for case in cases],
        [answer_sample(answer) for answer in answers],
        judge=judge,
        python=run_python_grader,
    )
    for case, result in zip(cases, results, strict=True):
        for failure in result.failures:  # a multi grader's failing sub-grader is named by its key
            shown = failure.message if failure.grader == grader.name else f"{failure.grader}: {failure.message}"
            failures.append(GraderFailure(grader.name, case.line, shown))
    return [round(result.reward, 4) for result in results]


def publish(client: OpenAI, report: EvalReport) -> str | None:
    """Leave the run with an `ftcli serve` backend, whose web page lists it; None when the backend is not one."""
    import openai

    from ftcli.service.errors import translated

    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    body = {"report": report.to_dict(), "cases": report.rows()}
    with translated():
        try:
            answer = client.post(f"{root}/ftcli/evals", body=body, cast_to=object)
        except openai.NotFoundError:
            return None  # another OpenAI-compatible server: it keeps no eval runs
    return str(answer["id"]) if isinstance(answer, dict) and "id" in answer else None


def _judged(
    judge: Judge,
    cases: list[EvalCase],
    answers: list[Answer],
    client_for: Callable[[ModelSpec], tuple[OpenAI, str]],
    cache_folder: Path,
    parallel: int,
) -> list[float | None]:
    """Per case: the judge asked with the answer first and with the reference first; each verdict for the answer
    scores 1, a tie 0.5, against it 0; the case's score is their mean (None when no verdict could be read, or the
    case has no reference)."""
    client, backend_id = client_for(judge.spec)
    cache = AnswerCache(cache_folder, backend_id, f"judge:{judge.spec.model}", Sampling())
    asks: list[tuple[str, list[dict[str, Any]]]] = []
    judged = [index for index, case in enumerate(cases) if not case.prompt_only]
    for index in judged:
        case, answer = cases[index], answers[index]
        mine, reference = _shown(answer.text, answer.calls), _shown(case.reference, tuple(case.reference_calls))
        for first, second in ((mine, reference), (reference, mine)):
            messages = judge_messages(case.prompt, first, second, judge.rubric)
            key = hashlib.sha256(json.dumps(messages, ensure_ascii=False).encode()).hexdigest()
            asks.append((key, messages))

    def ask(item: tuple[str, list[dict[str, Any]]]) -> None:
        key, messages = item
        if key not in cache.answers:
            verdict = reply(client, Sampling(max_tokens=8).params(judge.spec.model, None), messages)
            cache.put(key, Answer(verdict.answer))

    unique = list(dict(asks).items())  # an answer equal to the reference reads the same both ways: asked once
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(ask, unique))
    scores: list[float | None] = [None] * len(cases)
    for position, index in enumerate(judged):
        answer_first = _verdict(cache.answers[asks[2 * position][0]].text)
        reference_first = _verdict(cache.answers[asks[2 * position + 1][0]].text)
        points = [p for p in (_points(answer_first, 1), _points(reference_first, 2)) if p is not None]
        scores[index] = round(sum(points) / len(points), 4) if points else None
    return scores


def judge_messages(prompt: list[dict[str, Any]], first: str, second: str, rubric: str | None) -> list[dict[str, Any]]:
    conversation = "\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in prompt)
    rules = f"Judge by this rubric:\n{rubric.strip()}\n\n" if rubric else ""
    question = (
        f"{rules}Conversation:\n{conversation}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\n"
        "Which answer is better? Reply 1, 2 or tie."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": question}]


def _verdict(text: str) -> str | None:
    word = text.strip().strip("*.:\"'`").lower()
    for verdict in ("1", "2", "tie"):
        if word.startswith(verdict):
            return verdict
    return None


def _points(verdict: str | None, answer_position: int) -> float | None:
    """What a verdict gives the evaluated answer, shown at `answer_position`."""
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    return 1.0 if verdict == str(answer_position) else 0.0


def _shown(text: str, calls: tuple[dict[str, Any], ...]) -> str:
    shown = [text] if text else []
    shown += [f"(calls {c.get('name')} with {c.get('arguments')})" for c in calls]
    return "\n".join(shown) or "(no answer)"


# -- `chat --eval`: one model, each case asked once (no cache), each answer's exact match and similarity ---------

EXACT, SIMILARITY = GRADERS["normalised-exact"], GRADERS["similarity"]


@dataclass(frozen=True, slots=True)
class ScoredAnswer:
    """One line of `chat --eval`'s results file."""

    line: int
    reference: str
    answer: str
    exact: bool  # the normalised-exact grader
    similarity: float  # the similarity grader, 0..1

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    examples: int
    exact_matches: int
    mean_similarity: float

    @property
    def exact_rate(self) -> float:
        return self.exact_matches / self.examples if self.examples else 0.0


def score(reference: str, answer: str) -> tuple[bool, float]:
    """(exact match, similarity) of an answer, by the registered graders."""
    shown, wanted = Answer(answer), Reference(reference)
    return EXACT.score(wanted, shown, {}) == 1.0, round(SIMILARITY.score(wanted, shown, {}) or 0.0, 4)


def score_answers(client: OpenAI, params: ChatParams, cases: list[EvalCase]) -> Iterator[ScoredAnswer]:
    """Ask each case (`data/eval/cases.text_cases`), score its answer against the reference's text."""
    for case in cases:
        answer = complete(client, params, case.prompt)
        exact, similarity = score(case.reference, answer)
        yield ScoredAnswer(case.line, case.reference, answer, exact, similarity)


def summarise_scores(results: list[ScoredAnswer]) -> ScoreSummary:
    n = len(results)
    mean = round(sum(r.similarity for r in results) / n, 4) if n else 0.0
    return ScoreSummary(n, sum(r.exact for r in results), mean)


def _grade(grader: Grader, case: EvalCase, answer: Answer, options: dict[str, Any]) -> float | None:
    if case.prompt_only:
        return None  # ftcli's own graders compare with a reference, which a reinforcement record doesn't have
    reference = Reference(case.reference, tuple(case.reference_calls))
    score = grader.score(reference, answer, options)
    return None if score is None else round(score, 4)
