"""ftcli serve judges a job's hyperparameters by the method's schema (server/protocol/hyperparameters.py): the review's
bad inputs (a LoRA rank that made the worker allocate 768 TB, `n_epochs: 1e400`, negative values, strings, unknown
keys) are 400s in OpenAI's envelope naming the field, and no job is made; a finished job reports every setting it
trained with in the same schema, and its object stays valid against OpenAI's spec."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.protocol.hyperparameters import SupervisedHyperparameters, TrainingHyperparameters  # noqa: E402
from ftcli.server.store import Store  # noqa: E402
from tests.local.zorbia import QA, chat_jsonl  # noqa: E402
from tests.openai_spec import Exchange, violations  # noqa: E402

pytestmark = [pytest.mark.local]
LOCAL = "http://127.0.0.1:8765"
JOBS = "/v1/fine_tuning/jobs"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> TestClient:
    return TestClient(create_app(data_dir, lora_defaults={"lora_rank": 4}), base_url=LOCAL)  # no runner: no training


@pytest.fixture
def file_id(client: TestClient) -> str:
    uploaded = client.post("/v1/files", files={"file": ("z.jsonl", chat_jsonl(QA[:4]).encode())},
                           data={"purpose": "fine-tune"})  # fmt: skip
    return str(uploaded.json()["id"])


def _raw(client: TestClient, text: str) -> Any:
    """A body sent as written: `1e400` is a JSON number that Python reads as infinity."""
    return client.post(JOBS, content=text.encode(), headers={"content-type": "application/json"})


def _spec_valid(response: Any, method: str, path: str) -> None:
    exchange = Exchange(method, path, response.status_code, "application/json", response.content)
    assert violations(exchange) == []


@pytest.mark.parametrize(
    ("hyperparameters", "key", "says"),
    [
        ('{"lora_rank": 1000000000000}', "lora_rank", "lora_rank must be 'auto' or an integer from 1 to 1024"),
        ('{"n_epochs": 1e400}', "n_epochs", "n_epochs must be 'auto' or an integer from 1 to 50, got Infinity"),
        ('{"learning_rate_multiplier": -0.5}', "learning_rate_multiplier", "a number above 0, at most 10"),
        ('{"batch_size": -3}', "batch_size", "an integer from 1 to 256, got -3"),
        ('{"lora_rank": "abc"}', "lora_rank", 'got "abc"'),
        ('{"lora_dropout": "0.1"}', "lora_dropout", 'got "0.1"'),
        ('{"bogus": 1}', "bogus", 'unknown hyperparameter "bogus" for supervised training; it takes n_epochs'),
        ('{"fsdp": "yes"}', "fsdp", "fsdp must be 'auto' or true or false"),
        ('{"max_seq_length": 8}', "max_seq_length", "from 16 to 1048576"),
    ],
)
def test_bad_hyperparameters_are_400s_naming_the_field_and_make_no_job(
    client: TestClient, file_id: str, hyperparameters: str, key: str, says: str
) -> None:
    method = f'{{"type": "supervised", "supervised": {{"hyperparameters": {hyperparameters}}}}}'
    for body, where in (
        (f'{{"model": "ftcli/tiny", "training_file": "{file_id}", "method": {method}}}', "method.supervised."),
        (f'{{"model": "ftcli/tiny", "training_file": "{file_id}", "hyperparameters": {hyperparameters}}}', ""),
    ):
        refused = _raw(client, body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == f"{where}hyperparameters.{key}" and says in error["message"]
        assert error["type"] == "invalid_request_error"
        _spec_valid(refused, "POST", JOBS)
    assert client.get(JOBS).json()["data"] == []


def test_dpo_takes_its_own_keys_and_refuses_supervised_ones(client: TestClient, file_id: str) -> None:
    def create(hyperparameters: dict[str, Any]) -> Any:
        method = {"type": "dpo", "dpo": {"hyperparameters": hyperparameters}}
        return client.post(JOBS, json={"model": "ftcli/tiny", "training_file": file_id, "method": method})

    refused = create({"packing": False}).json()["error"]
    assert refused["param"] == "method.dpo.hyperparameters.packing" and "it takes" in refused["message"]
    assert "beta" in refused["message"] and "packing" not in refused["message"].split("it takes")[1]
    assert create({"beta": 0}).json()["error"]["param"] == "method.dpo.hyperparameters.beta"
    made = create({"beta": 0.2, "n_epochs": 2.0})
    assert made.status_code == 200  # a whole float is its integer
    assert made.json()["method"]["dpo"]["hyperparameters"] == {"beta": 0.2, "n_epochs": 2, "lora_rank": 4}


def test_a_method_section_or_hyperparameters_that_are_not_objects_are_refused(client: TestClient, file_id: str) -> None:
    for method, param in (
        ({"type": "dpo", "dpo": "x"}, "method.dpo"),
        ({"type": "supervised", "supervised": {"hyperparameters": [1]}}, "method.supervised.hyperparameters"),
        ({"type": "reinforcement"}, "method.reinforcement.grader"),  # required: what scores the answers
        ({"type": "unsupervised"}, "method.type"),
    ):
        refused = client.post(JOBS, json={"model": "ftcli/tiny", "training_file": file_id, "method": method})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param


def test_a_seed_past_openais_bound_is_refused(client: TestClient, file_id: str) -> None:
    refused = client.post(JOBS, json={"model": "ftcli/tiny", "training_file": file_id, "seed": 2**70})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "seed"


def test_a_precision_the_machine_lacks_is_refused_at_creation(
    client: TestClient, file_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftcli.server import hardware

    cpu = hardware.Machine(cuda=False, bf16=False, bitsandbytes=False)
    monkeypatch.setattr(hardware.Machine, "this_one", classmethod(lambda cls: cpu))
    body = {"model": "ftcli/tiny", "training_file": file_id, "hyperparameters": {"precision": "fp16"}}
    refused = client.post(JOBS, json=body).json()["error"]
    assert refused["param"] == "hyperparameters.precision" and "'fp16' needs a CUDA GPU" in refused["message"]
    body["hyperparameters"] = {"precision": "fp32"}
    assert client.post(JOBS, json=body).status_code == 200


def test_a_finished_job_reports_every_setting_it_trained_with(
    client: TestClient, file_id: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftcli.server import training, worker

    def trained(*args: Any, requested: TrainingHyperparameters, **_: Any) -> Any:
        """train_lora's answer without the training: the request resolved and settled as on this CPU."""
        hyper = training.Hyperparameters.resolve(requested, n_examples=len(args[2]), base=args[1])
        settled = replace(hyper, max_seq_length=2048, gradient_checkpointing=False, precision="fp32")
        return settled, training.TrainingResult(trained_tokens=100, steps=2)

    monkeypatch.setattr(training, "train_lora", trained)
    monkeypatch.setattr(worker, "exit_with_parent", lambda: None)
    monkeypatch.setattr(worker, "resolve_base", lambda *_: tmp_path)
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "stop_at_loss": 0.5}}}
    job_id = client.post(JOBS, json={"model": "ftcli/tiny", "training_file": file_id, "method": method}).json()["id"]
    worker.run_job(str(data_dir), job_id)

    got = client.get(f"{JOBS}/{job_id}")
    _spec_valid(got, "GET", f"{JOBS}/{job_id}")
    job = got.json()
    assert job["status"] == "succeeded"
    reported = job["method"]["supervised"]["hyperparameters"]
    assert reported == {
        "n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0, "lora_rank": 4, "lora_alpha": 64,
        "lora_dropout": 0.0, "stop_at_loss": 0.5, "max_seq_length": 2048, "gradient_checkpointing": False,
        "quantization": "none", "precision": "fp32", "fsdp": False, "packing": True,
    }  # fmt: skip
    assert SupervisedHyperparameters.model_validate(reported).given() == reported  # a valid request again
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0}


def test_a_stored_job_with_a_key_no_longer_taken_fails_in_words(
    data_dir: Path, file_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftcli.server import worker

    monkeypatch.setattr(worker, "exit_with_parent", lambda: None)
    store = Store(data_dir, clean=False)
    store.save_job({"id": "ftjob-old", "status": "queued", "created_at": 0, "model": "ftcli/tiny", "seed": 1,
                    "training_file": file_id, "validation_file": None,
                    "method": {"type": "supervised", "supervised": {"hyperparameters": {"bogus": 1}}}})  # fmt: skip
    with pytest.raises(SystemExit):
        worker.run_job(str(data_dir), "ftjob-old")
    job = store.job("ftjob-old")
    assert job is not None and job["status"] == "failed" and job["error"]["code"] == "invalid_hyperparameters"
    assert 'unknown hyperparameter "bogus"' in job["error"]["message"]
    assert json.dumps(job["error"]).count("Traceback") == 0


_WORKER_SEES = """
import json, sys
from pathlib import Path
from ftcli.server import grpo, training, worker

def trained(*args, **kwargs):  # what the job's training would find: whether bitsandbytes is there to import
    import peft.import_utils
    from transformers.utils import import_utils

    seen = {"peft": peft.import_utils.is_bnb_available(), "transformers": import_utils.is_bitsandbytes_available(),
            "imported": sys.modules.get("bitsandbytes") is not None}
    print(json.dumps(seen))
    raise SystemExit(0)

training.train_lora = trained
grpo.train_grpo = trained
worker.exit_with_parent = lambda: None
worker.resolve_base = lambda *_: Path(sys.argv[4])
worker.run_job(sys.argv[1], sys.argv[2], own_process=sys.argv[3] == "own")
"""
GRADER = {"type": "string_check", "name": "has an a", "input": "{{sample.output_text}}", "reference": "a",
          "operation": "like"}  # fmt: skip
QUANTIZED_CONFIG = {
    "model_type": "llama",
    "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True},
}


@pytest.mark.parametrize(
    ("hyperparameters", "process", "config", "sees_bitsandbytes"),
    [({}, "own", {"model_type": "llama"}, False), ({"quantization": "none"}, "own", {"model_type": "llama"}, False),
     ({"quantization": "4bit"}, "own", {"model_type": "llama"}, True), ({}, "own", QUANTIZED_CONFIG, True),
     ({}, "shared", {"model_type": "llama"}, True), ({"reinforcement": True}, "own", {"model_type": "llama"}, True)],
    ids=["auto", "none", "4bit", "base-saved-quantized", "not-its-own-process", "rft"],
)  # fmt: skip
def test_a_job_that_does_not_quantize_trains_without_bitsandbytes_in_its_own_process(
    client: TestClient, file_id: str, data_dir: Path, tmp_path: Path, hyperparameters: dict[str, Any], process: str,
    config: dict[str, Any], sees_bitsandbytes: bool,
) -> None:  # fmt: skip
    """PEFT and Transformers import bitsandbytes whenever it is installed (45 MB and 1.3 s of a job's start): the
    worker of a job that doesn't quantize leaves it out, in a fresh interpreter as the server spawns it. A QLoRA job
    keeps it, so does a job whose base was saved quantized (Transformers loads it through bitsandbytes), and so does
    a process that isn't the job's own (a test's, where a later job may quantize), and so does an RFT job (its model
    graders may run on a base saved quantized)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("bitsandbytes") is None:  # not imported here: this process keeps its own answer
        pytest.skip("scripts/test installs the gpu extra (bitsandbytes)")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    body: dict[str, Any] = {"model": "ftcli/tiny", "training_file": file_id, "hyperparameters": hyperparameters}
    if hyperparameters.get("reinforcement"):  # an RFT job (its method, not a setting)
        prompts = "".join(
            json.dumps({"messages": [{"role": "user", "content": f"A word ({n})?"}]}) + "\n" for n in range(4)
        )
        uploaded = client.post(
            "/v1/files", files={"file": ("p.jsonl", prompts.encode())}, data={"purpose": "fine-tune"}
        )
        body = {"model": "ftcli/tiny", "training_file": uploaded.json()["id"],
                "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER}}}  # fmt: skip
    created = client.post(JOBS, json=body).json()
    assert "id" in created, created
    job_id = created["id"]
    ran = subprocess.run(
        [sys.executable, "-c", _WORKER_SEES, str(data_dir), job_id, process, str(base)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert (seen["peft"], seen["transformers"]) == (sees_bitsandbytes, sees_bitsandbytes)
    if not sees_bitsandbytes:
        assert seen["imported"] is False  # what it saves: the library was not loaded at all
