"""OpenAI's grader language in ftcli's engine: definitions checked with the field named, templates filled (never
with a silent ""), string_check as OpenAI documents it, model graders through a fake judge, python graders through
a fake runner, multi graders' formulas parsed by ftcli's own parser (attacks included)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ftcli.data.graders.engine import (
    JudgeRefused,
    JudgeReply,
    Sample,
    grade,
    grade_batch,
    parse_label,
    parse_score,
)
from ftcli.data.graders.expression import evaluate, parse_expression
from ftcli.data.graders.spec import GraderError, grader_json, parse_grader
from ftcli.data.graders.template import has_reference, references, render

pytest.importorskip("sacrebleu", reason="the eval extra (scripts/test installs it)")


def check(operation: str, text: str, reference: str = "{{item.label}}") -> dict[str, Any]:
    return {"type": "string_check", "name": "check", "input": text, "reference": reference, "operation": operation}


# --- definitions ---------------------------------------------------------------------------------------------------

OPENAI_EXAMPLES = [  # the examples of OpenAI's spec and guides, as they are written there
    check("eq", "{{sample.output_text}}"),
    {
        "type": "text_similarity",
        "name": "Example text similarity grader",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "evaluation_metric": "fuzzy_match",
    },
    {
        "type": "python",
        "name": "Example python grader",
        "image_tag": "2025-05-08",
        "source": "def grade(sample: dict, item: dict) -> float:\n    return 1.0\n",
    },
    {
        "type": "score_model",
        "name": "Example score model grader",
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "Reference answer: {{item.label}}\nModel answer: {{sample.output_text}}",
                    },
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/reference.png",
                        "file_id": None,
                        "detail": "auto",
                    },
                ],
            }
        ],
        "model": "gpt-5-mini",
        "sampling_params": {
            "temperature": 1,
            "top_p": 1,
            "seed": 42,
            "max_completions_tokens": 32768,
            "reasoning_effort": "medium",
        },
    },
    {
        "name": "First label grader",
        "type": "label_model",
        "model": "gpt-4o-2024-08-06",
        "input": [
            {"type": "message", "role": "system", "content": {"type": "input_text", "text": "Classify the sentiment"}},
            {
                "type": "message",
                "role": "user",
                "content": {"type": "input_text", "text": "Statement: {{item.response}}"},
            },
        ],
        "passing_labels": ["positive"],
        "labels": ["positive", "neutral", "negative"],
    },
    {
        "name": "sample_multi_grader",
        "type": "multi",
        "graders": {
            "ext_text_similarity": {
                "name": "ext_text_similarity",
                "type": "text_similarity",
                "input": "{{sample.output_json.ext_text}}",
                "reference": "{{item.ext_text}}",
                "evaluation_metric": "fuzzy_match",
            },
            "clause_string_check": check("eq", "{{sample.output_json.clause_type}}", "{{item.clause_type}}"),
        },
        "calculate_output": "0.5 * ext_text_similarity + 0.5 * clause_string_check",
    },
]


@pytest.mark.parametrize("definition", OPENAI_EXAMPLES, ids=lambda d: d["type"])
def test_openai_examples_are_accepted_and_given_back_as_written(definition: dict[str, Any]) -> None:
    assert grader_json(parse_grader(definition)) == json.loads(json.dumps(definition))


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ([], r"^grader: a grader is a JSON object"),
        ({"type": "regex"}, r"^grader\.type: one of string_check, .*got 'regex'"),
        ({**check("eq", "a"), "refrence": "x"}, r"^grader\.refrence: not a field"),
        ({**check("eq", "a"), "input": 1}, r"^grader\.input: Input should be a valid string"),
        ({**check("eq", "a"), "operation": "contains"}, r"^grader\.operation: Input should be 'eq'"),
        ({k: v for k, v in check("eq", "a").items() if k != "reference"}, r"^grader\.reference: required, missing"),
        (check("eq", "{{sample.output}}"), r"^grader\.input: .*a sample has output_text, output_json, output_tools"),
        (check("eq", "{{items.x}}"), r"^grader\.input: .*namespace is item or sample"),
        (check("eq", "{{item}}"), r"^grader\.input: .*name a variable inside item"),
        (check("eq", "{{sample.output_text.x}}"), r"output_text is a string"),
        (
            {
                "type": "score_model",
                "name": "s",
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}],
            },
            r"^grader\.input\[0\]\.content\[0\]\.text: Input should be a valid string",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "input": [{"role": "robot", "content": "x"}]},
            r"^grader\.input\[0\]\.role: Input should be 'user'",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "range": [1, 0], "input": []},
            r"^grader\.range: a range is two finite numbers, low below high",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "range": [0, 1, 2], "input": []},
            r"^grader\.range: a range is two numbers",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "input": [], "sampling_params": {"temprature": 1}},
            r"^grader\.sampling_params\.temprature: not a field",
        ),
        (
            {"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["b"]},
            r"^grader\.passing_labels: not among labels: 'b'",
        ),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [],
                "labels": ["a", "a"],
                "passing_labels": ["a"],
            },
            r"^grader\.labels: each label once",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "graders": {"a": {**check("eq", "x"), "operation": "is"}},
                "calculate_output": "a",
            },
            r"^grader\.graders\.a\.operation: Input should be",
        ),
        (
            {"type": "multi", "name": "m", "graders": {"a": check("eq", "x")}, "calculate_output": "a + b"},
            r"^grader\.calculate_output: 'b' is not one of the graders",
        ),
        (
            {"type": "multi", "name": "m", "graders": {}, "calculate_output": "1"},
            r"^grader\.graders: a multi grader needs at least one grader",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "graders": {"a": {"type": "multi", "name": "n", "graders": {}, "calculate_output": "1"}},
                "calculate_output": "a",
            },
            r"^grader\.graders\.a: Input tag 'multi'",
        ),
    ],
)
def test_invalid_definitions_are_refused_naming_the_field(definition: Any, message: str) -> None:
    with pytest.raises(GraderError, match=message):
        parse_grader(definition)


def test_where_prefixes_the_path() -> None:
    with pytest.raises(GraderError, match=r"^method\.reinforcement\.grader\.input: "):
        parse_grader({**check("eq", "a"), "input": None}, where="method.reinforcement.grader")


def test_multi_graders_also_come_as_a_list_named_by_each_graders_name() -> None:
    listed = parse_grader(
        {"type": "multi", "name": "m", "graders": [check("eq", "a") | {"name": "first"}], "calculate_output": "first"}
    )
    assert list(listed.graders) == ["first"]  # type: ignore[union-attr]
    with pytest.raises(GraderError, match="two graders are named 'x'"):
        parse_grader(
            {"type": "multi", "name": "m", "graders": [check("eq", "a") | {"name": "x"}] * 2, "calculate_output": "x"}
        )


# --- templates -----------------------------------------------------------------------------------------------------


def test_templates_fill_strings_as_they_are_and_other_values_as_json() -> None:
    item = {"name": "Ada", "meta": {"id": 7, "tags": ["a", "b"]}, "ok": True, "none": None, "city": "北京"}
    sample = Sample.of_text('{"answer": {"x": 1}, "list": [3, 4]}')
    text = "{{item.name}}|{{ item.meta.id }}|{{item.meta.tags}}|{{item.meta.tags[1]}}|{{item.meta.tags.0}}|"
    text += "{{item.ok}}|{{item.none}}|{{item.city}}|{{sample.output_json.answer}}|{{sample.output_json.list[1]}}"
    assert render(text, item, sample) == 'Ada|7|["a", "b"]|b|a|true|null|北京|{"x": 1}|4'
    assert render("{{sample.output_text}}", {}, Sample("plain")) == "plain"
    tools = Sample("", output_tools=({"name": "f", "arguments": "{}"},))
    assert render("{{sample.output_tools}}", {}, tools) == '[{"name": "f", "arguments": "{}"}]'


def test_a_missing_item_field_is_an_error_for_that_sample_never_an_empty_string() -> None:
    grader = parse_grader(check("ne", "{{sample.output_text}}"))  # `ne` against "" would pass every answer
    result = grade(grader, {"lable": "x"}, Sample("anything"))
    assert result.reward == 0.0
    assert result.errors == ["check: the item has no field 'label'"]
    assert [f.kind for f in result.failures] == ["invalid_variable_error"]


def test_output_json_of_an_answer_that_is_not_json_is_a_sample_parse_error() -> None:
    grader = parse_grader(check("eq", "{{sample.output_json.x}}", "1"))
    assert grade(grader, {}, Sample.of_text('{"x": "1"}')).reward == 1.0
    failed = grade(grader, {}, Sample.of_text("not json"))
    assert failed.reward == 0.0 and failed.kinds == {"sample_parse_error"}


def test_references_name_the_item_fields_of_every_sub_grader() -> None:
    grader = parse_grader(OPENAI_EXAMPLES[-1])
    assert references(grader) == {"ext_text", "clause_type"}
    nested = parse_grader(check("eq", "{{item.meta.tags[0]}}", "{{sample.output_text}}"))
    assert references(nested) == {"meta.tags.0"}
    assert has_reference({"meta": {"tags": ["x"]}}, "meta.tags.0")
    assert not has_reference({"meta": {"tags": []}}, "meta.tags.0")


# --- string_check --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "answer", "label", "reward"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),  # case-sensitive
        ("eq", "Paris ", "Paris", 0.0),  # exact: no trimming
        ("ne", "London", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "The capital is Paris.", "Paris", 1.0),  # contains
        ("like", "The capital is paris.", "Paris", 0.0),
        ("ilike", "THE CAPITAL IS PARIS.", "Paris", 1.0),  # contains, case aside
        ("ilike", "Lyon", "Paris", 0.0),
        ("like", "首都是北京。", "北京", 1.0),
    ],
)
def test_string_check_operations_as_openai_documents_them(
    operation: str, answer: str, label: str, reward: float
) -> None:
    grader = parse_grader(check(operation, "{{sample.output_text}}"))
    assert grade(grader, {"label": label}, Sample(answer)).reward == reward


# --- model graders -------------------------------------------------------------------------------------------------


class FakeJudge:
    def __init__(self, *answers: str | JudgeReply | Exception) -> None:
        self.answers, self.calls = list(answers), []  # type: list[str | JudgeReply | Exception], list[tuple[str, Any, Any]]

    def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str | JudgeReply:
        self.calls.append((model, messages, sampling))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


SCORE = {
    "type": "score_model",
    "name": "judge",
    "model": "my-judge",
    "range": [0, 10],
    "input": [
        {"role": "system", "content": "You grade answers."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Reference: {{item.label}}"},
                {"type": "input_text", "text": "Answer: {{sample.output_text}}"},
            ],
        },
    ],
    "sampling_params": {"temperature": 0.5, "seed": 3, "max_completions_tokens": 20},
}


def test_score_model_asks_the_judge_with_filled_messages_and_its_sampling() -> None:
    judge = FakeJudge(JudgeReply('{"result": 7.5}', prompt_tokens=30, completion_tokens=5))
    result = grade(parse_grader(SCORE), {"label": "Paris"}, Sample("Paris"), judge=judge)
    assert result.reward == 7.5 and not result.failures
    assert result.judge_model == "my-judge" and result.token_usage["my-judge"].total_tokens == 35
    model, messages, sampling = judge.calls[0]
    assert model == "my-judge"
    assert messages[0] == {"role": "system", "content": "You grade answers."}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"].startswith("Reference: Paris\nAnswer: Paris\n\n")
    assert '{"result": <a number from 0 to 10>}' in messages[1]["content"]
    assert sampling["temperature"] == 0.5 and sampling["seed"] == 3
    assert sampling["max_completion_tokens"] == 20 and "max_completions_tokens" not in sampling
    assert sampling["response_format"]["json_schema"]["schema"]["properties"]["result"] == {"type": "number"}


@pytest.mark.parametrize(
    ("answer", "reward", "kind"),
    [
        ("8", 8.0, None),
        ("Score: 6.5", 6.5, None),
        ('```json\n{"result": 4}\n```', 4.0, None),
        ('{"score": 3}', 3.0, None),
        ("42", 10.0, None),  # out of range: truncated to it, as OpenAI does
        ("-3", 0.0, None),
        ("somewhere between 3 and 4", 0.0, "model_grader_parse_error"),  # two numbers: not guessed at
        ("excellent", 0.0, "model_grader_parse_error"),
        ('{"result": "high"}', 0.0, "model_grader_parse_error"),
    ],
)
def test_score_model_answers_are_parsed_strictly_enough(answer: str, reward: float, kind: str | None) -> None:
    result = grade(parse_grader(SCORE), {"label": "x"}, Sample("y"), judge=FakeJudge(answer))
    assert result.reward == reward
    assert result.kinds == ({kind} if kind else set())


def test_judge_failures_are_errors_of_their_kind() -> None:
    grader = parse_grader(SCORE)
    assert grade(grader, {"label": "x"}, Sample("y")).kinds == {"model_grader_server_error"}  # no judge at all
    refused = grade(grader, {"label": "x"}, Sample("y"), judge=FakeJudge(JudgeRefused("I can't grade that")))
    assert refused.kinds == {"model_grader_refusal_error"}
    down = grade(
        grader, {"label": "x"}, Sample("y"), judge=FakeJudge(GraderError("the model 'my-judge' is not served"))
    )
    assert down.kinds == {"model_grader_server_error"} and "not served" in down.errors[0]
    crashed = grade(grader, {"label": "x"}, Sample("y"), judge=FakeJudge(ConnectionError("refused")))
    assert crashed.kinds == {"model_grader_server_error"} and "ConnectionError" in crashed.errors[0]


LABEL = OPENAI_EXAMPLES[4]


@pytest.mark.parametrize(
    ("answer", "reward", "kind"),
    [
        ('{"result": "positive"}', 1.0, None),
        ('{"result": "neutral"}', 0.0, None),
        ("Positive.", 1.0, None),
        ("The sentiment is negative overall", 0.0, None),
        ("positive or negative", 0.0, "model_grader_parse_error"),
        ("happy", 0.0, "model_grader_parse_error"),
    ],
)
def test_label_model_passes_on_a_passing_label(answer: str, reward: float, kind: str | None) -> None:
    judge = FakeJudge(answer)
    result = grade(parse_grader(LABEL), {"response": "I love it"}, Sample("-"), judge=judge)
    assert (result.reward, result.kinds) == (reward, {kind} if kind else set())
    messages, sampling = judge.calls[0][1], judge.calls[0][2]
    assert messages[1]["content"].startswith("Statement: I love it\n\n")
    assert sampling["response_format"]["json_schema"]["schema"]["properties"]["result"]["enum"] == LABEL["labels"]


def test_parsers_directly() -> None:
    assert parse_score(" 0.25 ") == 0.25 and parse_score("1e-1") == 0.1
    with pytest.raises(ValueError, match="no single score"):
        parse_score("3.14.15")
    assert parse_label('"neutral"', ["positive", "neutral"]) == "neutral"


# --- python --------------------------------------------------------------------------------------------------------

PYTHON = OPENAI_EXAMPLES[2]


def test_python_graders_go_to_the_runner_with_sample_and_item() -> None:
    seen: list[Any] = []

    def runner(source: str, sample: dict[str, Any], item: dict[str, Any]) -> float:
        seen.append((source, sample, item))
        return 0.25

    grader = parse_grader(PYTHON)
    result = grade(grader, {"label": "a"}, Sample.of_text('{"k": 1}'), python=runner)
    assert result.reward == 0.25
    assert seen == [
        (PYTHON["source"], {"output_text": '{"k": 1}', "output_json": {"k": 1}, "output_tools": []}, {"label": "a"})
    ]


def test_python_grader_failures_are_errors_of_their_kind() -> None:
    grader = parse_grader(PYTHON)
    missing = grade(grader, {}, Sample("x"))
    assert missing.kinds == {"python_grader_server_error"} and "python graders need the sandbox" in missing.errors[0]

    def raising(error: Exception) -> Any:
        def runner(*_args: Any) -> float:
            raise error

        return runner

    own = grade(grader, {}, Sample("x"), python=raising(GraderError("ZeroDivisionError: division by zero")))
    assert own.kinds == {"python_grader_runtime_error"} and "ZeroDivisionError" in own.errors[0]
    broken = grade(grader, {}, Sample("x"), python=raising(OSError("no such file")))
    assert broken.kinds == {"python_grader_server_error"}
    nan = grade(grader, {}, Sample("x"), python=lambda *_: float("nan"))
    assert nan.reward == 0.0 and nan.kinds == {"python_grader_runtime_error"}


# --- multi and its formula -----------------------------------------------------------------------------------------


def multi(formula: str) -> Any:
    return parse_grader(
        {
            "type": "multi",
            "name": "combined",
            "graders": {
                "exact": check("eq", "{{sample.output_text}}"),
                "similar": {
                    "type": "text_similarity",
                    "name": "similar",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.label}}",
                    "evaluation_metric": "fuzzy_match",
                },
            },
            "calculate_output": formula,
        }
    )


def test_multi_combines_sub_rewards_by_its_formula() -> None:
    result = grade(multi("0.5 * exact + 0.5 * similar"), {"label": "sitting"}, Sample("kitten"))
    assert result.sub_rewards == {"exact": 0.0, "similar": pytest.approx(8 / 13)}
    assert result.reward == pytest.approx(0.5 * 8 / 13)


def test_a_failing_sub_grader_scores_the_multi_grader_zero_with_its_error() -> None:
    result = grade(multi("1 - exact"), {}, Sample("x"))  # 1 - (a made-up 0) would reward the failure
    assert result.reward == 0.0 and result.kinds == {"invalid_variable_error"}
    assert {f.grader for f in result.failures} == {"exact", "similar"}


def test_formula_arithmetic_follows_precedence() -> None:
    names = {"a", "b"}

    def value(formula: str, a: float = 2.0, b: float = 3.0) -> float:
        return evaluate(parse_expression(formula, names=names), {"a": a, "b": b})

    assert value("a + b * 2") == 8.0
    assert value("(a + b) * 2") == 10.0
    assert value("-a ^ 2") == -4.0  # the power first, then the sign
    assert value("2 ^ 3 ^ 2") == 512.0  # right-associative
    assert value("a ** -1") == 0.5
    assert value("a / b - 1") == pytest.approx(-1 / 3)
    assert value("min(a, b, 1) + max(a, b)") == 4.0
    assert value("abs(-b) + floor(2.7) + ceil(2.1) + sqrt(16) + exp(0) + log(1)") == 3 + 2 + 3 + 4 + 1 + 0
    assert value("(100 - abs(a - b)) / 100", a=90, b=70) == 0.8
    assert value(".5e1 + 1.") == 6.0


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("__import__('os')", 'unexpected character "\'"'),
        ("__import__", "'__import__' is not one of the graders"),
        ("exact.__class__", "unexpected character '.'"),
        ("(lambda: 1)()", "unexpected character ':'"),
        ("eval(1)", "'eval' is not a function here"),
        ("exact[0]", "unexpected character '\\['"),
        ("exact; 1", "unexpected character ';'"),
        ("exact +", "the formula ends too soon"),
        ("exact similar", "unexpected 'similar'"),
        ("abs(1, 2)", r"abs\(\) takes 1 argument"),
        ("", "an empty formula"),
        ("1e999", "too large"),
        ("(" * 60 + "1" + ")" * 60, "nested more than 50 deep"),
        ("1+" * 1500 + "1", "at most 2000 characters"),
    ],
)
def test_formulas_are_parsed_never_run_as_python(formula: str, message: str) -> None:
    with pytest.raises(GraderError, match=message):
        parse_expression(formula, names={"exact", "similar"})


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("9 ^ 9 ^ 9", "overflows"),
        ("exp(1000)", "overflows"),
        ("exact / 0", "divides by zero"),
        ("log(exact)", "undefined"),
        ("sqrt(exact - 1)", "undefined"),
    ],
)
def test_formulas_that_fail_on_a_sample_are_its_error_quickly(formula: str, message: str) -> None:
    started = time.monotonic()
    result = grade(multi(formula), {"label": "x"}, Sample("y"))
    assert time.monotonic() - started < 30  # a power is computed as a float: never a hang building a huge integer
    assert result.reward == 0.0 and result.kinds == {"other_error"} and message in result.errors[0]


def test_grade_batch_keeps_order_with_judges_in_parallel() -> None:
    class Echo:
        def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str:
            return str(messages[-1]["content"]).split("Answer: ")[1].split("\n")[0]

    answers = [str(n) for n in range(10)]
    results = grade_batch(
        parse_grader(SCORE), [{"label": "x"}] * 10, [Sample(a) for a in answers], judge=Echo(), workers=4
    )
    assert [r.reward for r in results] == [float(n) for n in range(10)]
    with pytest.raises(ValueError, match="2 items for 1 samples"):
        grade_batch(parse_grader(SCORE), [{}, {}], [Sample("a")])


# --- bounds on what one request can make the server do --------------------------------------------------------------


def test_a_placeholder_never_spans_a_brace_so_unclosed_braces_scan_once() -> None:
    from ftcli.data.graders.template import MAX_TEMPLATE_LENGTH, PLACEHOLDER, check_template

    # `(.*?)` took "a{{b" here, and rescanned the whole rest of the text after every unclosed "{{" (quadratic)
    assert PLACEHOLDER.findall("{{a{{b}}") == ["b"]
    check_template("{{" * (MAX_TEMPLATE_LENGTH // 2), where="grader.input")  # at the cap: nothing to fill, no hang
    with pytest.raises(GraderError, match=f"grader.input: a template of at most {MAX_TEMPLATE_LENGTH} characters"):
        parse_grader(check("eq", "{{" * (MAX_TEMPLATE_LENGTH // 2 + 1)))


def test_a_filled_template_over_the_cap_is_that_samples_error() -> None:
    from ftcli.data.graders.template import MAX_RENDERED_LENGTH, TemplateError

    field = "x" * 1000
    copies = MAX_RENDERED_LENGTH // len(field) + 1
    with pytest.raises(TemplateError, match=f"over {MAX_RENDERED_LENGTH} characters"):
        render("{{item.a}}" * copies, {"a": field}, None)
    assert len(render("{{item.a}}" * (copies // 2), {"a": field}, None)) == (copies // 2) * len(field)
    result = grade(parse_grader(check("eq", "{{item.a}}" * copies)), {"a": field, "label": "x"}, Sample("x"))
    assert result.reward == 0.0 and result.kinds == {"other_error"}


def test_labels_are_bounded_and_checked_in_linear_time() -> None:
    from ftcli.data.graders.spec import MAX_LABELS

    def label_model(labels: list[str], passing: list[str]) -> dict[str, Any]:
        return {
            "type": "label_model",
            "name": "l",
            "model": "m",
            "input": [{"role": "user", "content": "{{sample.output_text}}"}],
            "labels": labels,
            "passing_labels": passing,
        }

    many = [str(n) for n in range(MAX_LABELS)]
    assert parse_grader(label_model(many, many)).labels == many  # type: ignore[union-attr]
    with pytest.raises(GraderError, match=f"grader.labels: List should have at most {MAX_LABELS} items"):
        parse_grader(label_model([*many, "one more"], ["0"]))
    with pytest.raises(GraderError, match="repeated: '1', '2'"):
        parse_grader(label_model(["2", "1", "2", "1", "3"], ["3"]))
    with pytest.raises(GraderError, match="not among labels: 'z'"):
        parse_grader(label_model(many, ["0", "z"]))


def test_a_multi_grader_has_a_bounded_number_of_sub_graders() -> None:
    from ftcli.data.graders.spec import MAX_SUB_GRADERS

    def many(count: int) -> dict[str, Any]:
        graders = {f"g{n}": check("eq", "{{sample.output_text}}") for n in range(count)}
        return {"type": "multi", "name": "m", "graders": graders, "calculate_output": "g0"}

    assert len(parse_grader(many(MAX_SUB_GRADERS)).graders) == MAX_SUB_GRADERS  # type: ignore[union-attr]
    for definition in (
        many(MAX_SUB_GRADERS + 1),
        {**many(0), "graders": [{**sub, "name": name} for name, sub in many(MAX_SUB_GRADERS + 1)["graders"].items()]},
    ):
        with pytest.raises(GraderError, match=f"grader.graders: a multi grader has at most {MAX_SUB_GRADERS} graders"):
            parse_grader(definition)


def test_a_long_chain_of_terms_is_refused_and_a_deep_tree_is_an_error_not_a_crash() -> None:
    from ftcli.data.graders.expression import MAX_TOKENS, Binary, ExpressionError, Name

    refused = "+".join(["a"] * (MAX_TOKENS // 2 + 1))  # each + nests the tree one level deeper
    with pytest.raises(GraderError, match=f"at most {MAX_TOKENS} numbers, names and operators"):
        parse_expression(refused, names={"a"})
    accepted = "+".join(["a"] * (MAX_TOKENS // 2))
    assert evaluate(parse_expression(accepted, names={"a"}), {"a": 1.0}) == MAX_TOKENS // 2
    tree: Any = Name("a")
    for _ in range(100_000):  # a tree built around the parser's bounds
        tree = Binary("+", tree, Name("a"))
    with pytest.raises(ExpressionError, match="nested too deep"):
        evaluate(tree, {"a": 1.0})


def test_json_nested_past_the_recursion_limit_is_not_json() -> None:
    deep = "[" * 100_000
    assert Sample.of_text(deep) == Sample(output_text=deep, output_json=None)
    assert parse_score(f"{deep} 0.5") == 0.5  # a judge's answer: not JSON, so its one number


def test_a_sandbox_this_machine_lacks_is_raised_never_a_reward_of_zero() -> None:
    from ftcli.data.graders.python_sandbox import SandboxUnavailableError

    def runner(*_args: Any) -> float:
        raise SandboxUnavailableError("no Landlock here")

    with pytest.raises(SandboxUnavailableError, match="no Landlock"):
        grade(parse_grader(PYTHON), {}, Sample("x"), python=runner)
