"""`train` as service operations (service/training.py), without the CLI: a local file is checked, uploaded once with
its progress reported, and the job started once with its run manifest; bad data never reaches the backend."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest

from ftcli.data.hyperparameters import InvalidHyperparameter
from ftcli.service.backends.openai_protocol import OpenAIBackend
from ftcli.service.client import make_client
from ftcli.service.errors import CheckFailed, UsageError
from ftcli.service.jobs import JobRequest
from ftcli.service.ledger import Ledger
from ftcli.service.manifest import RunManifest
from ftcli.service.settings import Settings
from ftcli.service.training import prepare, start
from tests.conftest import chat, qa
from tests.faults.fakeapi import FakeAPI


@pytest.fixture
def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def client(fake: FakeAPI) -> Iterator[object]:
    with httpx2.Client(transport=fake.transport()) as http:
        yield make_client(Settings(kind="openai", api_key="sk-test"), http_client=http, max_retries=0)


def _progress(seen: dict[str, int]) -> Callable[[Path], object]:
    @contextmanager
    def bar(path: Path) -> Iterator[Callable[[int], None]]:
        seen[path.name] = 0

        def advance(sent: int) -> None:
            seen[path.name] += sent

        yield advance

    return bar


def test_a_local_file_is_checked_uploaded_once_and_the_job_started_with_its_manifest(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # run manifests go to ./.ftcli/runs
    data = write_jsonl([qa(i) for i in range(12)])
    ledger, seen = Ledger(tmp_path / "ledger.json"), {}
    options = JobRequest(
        model="gpt-4.1-mini-2025-04-14", training_file=str(data), n_epochs=2, metadata={"team": "legal"}
    )
    prepared = prepare(OpenAIBackend(client), options, ledger=ledger, progress=_progress(seen))  # type: ignore[arg-type]
    assert seen == {data.name: data.stat().st_size}  # every byte reported to the caller's progress
    assert prepared.report is not None and prepared.report.examples == 12
    assert fake.contents[prepared.training.file_id] == data.read_bytes()
    assert prepared.request.n_epochs == 2 and prepared.request.method == "sft"

    job = start(OpenAIBackend(client), prepared, described={"kind": "openai"})  # type: ignore[arg-type]
    assert fake.requests.count(("POST", "/v1/fine_tuning/jobs")) == 1
    manifest = RunManifest.load(job.id)
    assert manifest is not None and manifest.training_file["sha256"] == prepared.training.sha256
    assert manifest.training_file["path"] == str(data)
    assert manifest.check is not None and (manifest.check["examples"], manifest.check["errors"]) == (12, 0)

    again = prepare(OpenAIBackend(client), options, ledger=ledger)  # type: ignore[arg-type]
    assert again.training.file_id == prepared.training.file_id  # identical bytes: reused, not sent twice
    assert fake.requests.count(("POST", "/v1/files")) == 1


def test_a_file_with_errors_never_reaches_the_backend(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    data = write_jsonl([qa(1), "{not json", json.dumps({"messages": []})])
    with pytest.raises(CheckFailed, match="line 2"):
        prepare(OpenAIBackend(client), JobRequest(model="gpt-4.1-mini-2025-04-14", training_file=str(data)))  # type: ignore[arg-type]
    assert fake.requests == []


def test_an_uploaded_file_id_is_used_as_it_is(fake: FakeAPI, client: object) -> None:
    options = JobRequest(
        model="gpt-4.1-mini-2025-04-14", training_file="file-abc", validation_file="file-def", method="sft"
    )  # with its method given: else its content is read back to tell (tests/faults/test_train_method_cli.py)
    prepared = prepare(OpenAIBackend(client), options)  # type: ignore[arg-type]
    assert (prepared.training.file_id, prepared.training.report) == ("file-abc", None)
    assert prepared.validation is not None and prepared.validation.file_id == "file-def"
    assert fake.requests == []


# -- hyperparameters a backend doesn't take: refused before anything is sent (issue 29, point 9) -------------------


def _with_h(data: Path, method: str = "sft", **extra: object) -> JobRequest:
    return JobRequest(model="ftcli/tiny", training_file=str(data), method=method, extra_hyperparameters=dict(extra))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"bogus": 1}, 'unknown hyperparameter "bogus" for supervised training; it takes n_epochs, batch_size'),
        ({"lora_rank": "abc"}, "lora_rank must be 'auto' or an integer from 1 to 1024, got \"abc\""),
        ({"lora_rank": 10**12}, "an integer from 1 to 1024"),
        ({"stop_at_loss": float("nan")}, "got NaN"),
    ],
)
def test_ftcli_serves_hyperparameters_are_checked_against_its_schema_before_the_upload(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path], extra: dict[str, object], says: str
) -> None:
    data = write_jsonl([qa(i) for i in range(12)])
    backend = OpenAIBackend(client, kind="compatible")  # type: ignore[arg-type]
    with pytest.raises(InvalidHyperparameter, match=re.escape(says)) as refused:
        prepare(backend, _with_h(data, **extra), ftcli_server=True)
    assert refused.value.exit_code == 2
    assert fake.requests == []  # nothing uploaded, no job


def test_ftcli_serves_bounds_hold_for_the_options_too_and_a_good_request_goes_through(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    data = write_jsonl([qa(i) for i in range(12)])
    backend = OpenAIBackend(client, kind="compatible")  # type: ignore[arg-type]
    too_many = JobRequest(model="ftcli/tiny", training_file=str(data), n_epochs=51)
    with pytest.raises(InvalidHyperparameter, match="n_epochs must be"):
        prepare(backend, too_many, ftcli_server=True)
    with pytest.raises(InvalidHyperparameter, match='"packing" for dpo training'):
        prepare(backend, _with_h(data, "dpo", packing=False), ftcli_server=True)
    assert fake.requests == []
    prepared = prepare(backend, _with_h(data, lora_rank=8, packing=False), ftcli_server=True)
    assert prepared.request.extra_hyperparameters == {"lora_rank": 8, "packing": False}
    assert prepared.request.training_file == prepared.training.file_id != ""


def test_another_compatible_servers_own_keys_are_its_business(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    data = write_jsonl([qa(i) for i in range(12)])
    prepared = prepare(OpenAIBackend(client, kind="compatible"), _with_h(data, warmup_steps=10))  # type: ignore[arg-type]
    assert prepared.request.extra_hyperparameters == {"warmup_steps": 10}


@pytest.mark.parametrize(("kind", "name"), [("openai", "OpenAI"), ("azure", "Azure OpenAI")])
def test_openai_and_azure_take_no_hyperparameter_beyond_their_options(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path], kind: str, name: str
) -> None:
    data = write_jsonl([qa(i) for i in range(12)])
    options = JobRequest(model="gpt-4.1-mini-2025-04-14", training_file=str(data), extra_hyperparameters={"bogus": 1})
    with pytest.raises(UsageError, match=f"^{name} takes no hyperparameter bogus$") as refused:
        prepare(OpenAIBackend(client, kind=kind), options)  # type: ignore[arg-type]
    assert refused.value.hint == (
        "it takes n_epochs, batch_size, learning_rate_multiplier, set with --epochs, --batch-size, --lr-multiplier"
    )
    assert fake.requests == []


def test_together_refuses_what_it_lacks_before_the_upload(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    from ftcli.service.backends.together import TogetherBackend

    data = write_jsonl([qa(i) for i in range(12)])
    options = JobRequest(model="meta-llama/x", training_file=str(data), extra_hyperparameters={"bogus": 1})
    with pytest.raises(UsageError, match="Together has no setting bogus") as refused:
        prepare(TogetherBackend(client), options)  # type: ignore[arg-type]
    assert refused.value.hint is not None and "lora_rank" in refused.value.hint  # the names it takes
    assert fake.requests == []


def test_an_ftcli_serve_is_known_by_the_runtime_file_it_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftcli.data.local_server import publish
    from ftcli.service.training import is_ftcli_server

    monkeypatch.setenv("FTCLI_RUNTIME_DIR", str(tmp_path / "runtime"))
    publish("http://127.0.0.1:48765/v1", "key-0123456789", data_dir=tmp_path)
    assert is_ftcli_server(Settings(kind="compatible", base_url="http://127.0.0.1:48765/v1"))
    assert not is_ftcli_server(Settings(kind="compatible", base_url="http://127.0.0.1:48766/v1"))  # another port
    assert not is_ftcli_server(Settings(kind="compatible", base_url="http://gpu-box:48765/v1"))
    assert not is_ftcli_server(Settings(kind="openai"))


# -- one job request from `train`'s options to the backend (issue 24, point 2) -------------------------------------


def _export(tmp_path: Path, data: Path, *, method: str = "dpo") -> Path:
    """An exported job as `ftcli export` writes it: job.json, its training file, and the manifest's sha256 of it."""
    import hashlib

    folder = tmp_path / "export" / "ftjob-old"
    (folder / "files").mkdir(parents=True)
    copy = folder / "files" / "file-old-train.jsonl"
    copy.write_bytes(data.read_bytes())
    hyper = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0, "beta": 0.2, "lora_rank": 8}
    job = {"id": "ftjob-old", "model": "gpt-4.1-mini-2025-04-14", "seed": 11, "user_provided_suffix": "old",
           "method": {"type": method, method: {"hyperparameters": hyper}}}  # fmt: skip
    (folder / "job.json").write_text(json.dumps(job))
    artifact = {"bytes": copy.stat().st_size, "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
                "source": "file file-old (training_file)"}  # fmt: skip
    jobs = {"ftjob-old": {"artifacts": {"ftjob-old/files/file-old-train.jsonl": artifact}}}
    (folder.parent / "manifest.json").write_text(json.dumps({"format": 1, "backend": {"kind": "openai"}, "jobs": jobs}))
    return folder


def test_an_export_fills_only_what_the_request_leaves_unset(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    preference = [
        {"input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}]},
         "preferred_output": [{"role": "assistant", "content": f"{2 * i}"}],
         "non_preferred_output": [{"role": "assistant", "content": "no idea"}]}
        for i in range(12)
    ]  # fmt: skip
    data = write_jsonl(preference)
    folder = _export(tmp_path, data)
    asked = JobRequest(model="gpt-4.1-mini-2025-04-14", batch_size=16, metadata={"team": "legal"})
    prepared = prepare(OpenAIBackend(client), asked, from_export=folder)  # type: ignore[arg-type]
    request = prepared.request
    assert (request.method, request.n_epochs, request.batch_size) == ("dpo", 3, 16)  # the user's batch size wins
    assert (request.learning_rate_multiplier, request.beta, request.seed, request.suffix) == (2.0, 0.2, 11, "old")
    assert request.extra_hyperparameters == {}  # OpenAI takes no lora_rank: not carried over
    assert request.metadata == {"team": "legal", "ftcli_retrain_of": "ftjob-old"}
    assert fake.contents[request.training_file] == data.read_bytes()  # the export's data, uploaded
    assert prepared.exported is not None and prepared.exported.job["id"] == "ftjob-old"


def test_without_a_file_or_an_export_nothing_is_sent(fake: FakeAPI, client: object) -> None:
    with pytest.raises(UsageError, match="--file is required"):
        prepare(OpenAIBackend(client), JobRequest(model="gpt-4.1-mini-2025-04-14"))  # type: ignore[arg-type]
    assert fake.requests == []


# -- check and train agree on a file's method (issue 23, point 3) -------------------------------------------------


def _preference(i: int) -> dict[str, object]:
    return {"input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{2 * i}"}],
            "non_preferred_output": [{"role": "assistant", "content": "no idea"}]}  # fmt: skip


def test_a_dpo_file_trains_as_dpo_without_method_as_check_reads_it(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    from ftcli.data.check.engine import check_file

    data = write_jsonl([_preference(i) for i in range(12)])
    assert check_file(data).method == "dpo"  # what `check` (and `upload`) decide
    asked = JobRequest(model="gpt-4.1-mini-2025-04-14", training_file=str(data), beta=0.2)  # --beta: DPO's own
    prepared = prepare(OpenAIBackend(client), asked)  # type: ignore[arg-type]
    assert prepared.request.method == "dpo" and prepared.report is not None
    assert (prepared.report.method, prepared.report.examples, prepared.report.errors) == ("dpo", 12, 0)
    body = prepared.request.create_params(tag="")["method"]
    assert body["type"] == "dpo" and body["dpo"]["hyperparameters"]["beta"] == 0.2


def test_method_sft_on_a_dpo_file_is_refused_naming_method_dpo_before_anything_is_sent(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    data = write_jsonl([_preference(i) for i in range(12)])
    asked = JobRequest(model="gpt-4.1-mini-2025-04-14", training_file=str(data), method="sft")
    with pytest.raises(CheckFailed) as refused:
        prepare(OpenAIBackend(client), asked)  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"{data} has 1 error(s): line 1: FT104 12 of 12 records: preference (DPO) record, but --method sft trains on "
        "chat (SFT) records"
    )  # one finding for the file, not one per line
    assert refused.value.hint is not None
    assert refused.value.hint.startswith("--method dpo trains on it")
    assert f"`ftcli check {data} --method sft` lists them all" in refused.value.hint
    assert "--no-check" not in refused.value.hint  # train has no such option
    assert fake.requests == []


def test_a_validation_file_is_checked_with_the_training_file_before_either_is_sent(
    fake: FakeAPI, client: object, write_jsonl: Callable[..., Path]
) -> None:
    train = write_jsonl([qa(i) for i in range(12)], "train.jsonl")
    other = write_jsonl([_preference(i) for i in range(3)], "val.jsonl")
    asked = JobRequest(model="gpt-4.1-mini-2025-04-14", training_file=str(train), validation_file=str(other))
    with pytest.raises(CheckFailed, match=r"val\.jsonl line 1: FT103 3 of 3 records: preference \(DPO\) record, but "
                       r"the training file's records are chat \(SFT\)"):  # fmt: skip
        prepare(OpenAIBackend(client), asked)  # type: ignore[arg-type]
    assert fake.requests == []  # the training file wasn't uploaded first either

    no_system = write_jsonl([chat(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(3)], "val.jsonl")
    prepared = prepare(OpenAIBackend(client), replace(asked, validation_file=str(no_system)))  # type: ignore[arg-type]
    assert prepared.report is not None and prepared.report.validation_examples == 3
    assert "FT230" not in {d.code for d in prepared.report.diagnostics}  # that file has no system message anywhere
    assert prepared.validation is not None and fake.contents[prepared.validation.file_id] == no_system.read_bytes()
