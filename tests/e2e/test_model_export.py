"""Models that leave ftcli (issues 14, 22): `ftcli models export` writes a PEFT adapter folder and a merged model
folder that plain transformers and peft load, with the same next-token logits as each other, and the model that
`ftcli serve` answers with: its greedy answers are the merged model's own greedy choices, token by token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.fine_tuning import FineTuningJob
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.e2e.conftest import Server
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local]
PROMPTS = [[SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA[:3]]


def _export(server: Server, tmp_path: Path, *args: str) -> Any:
    env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "FTCLI_DATA_DIR": str(tmp_path / "data")}
    return CliRunner().invoke(app, ["--base-url", server.url, *args], env=env)


def _logits(model: Any, tokenizer: Any) -> Any:
    import torch

    from ftcli.data.chat_template import encode_chat
    from ftcli.server.chat_tokens import collate

    inputs = collate([encode_chat(tokenizer, messages) for messages in PROMPTS], tokenizer.pad_token_id)
    inputs.pop("labels")
    with torch.no_grad():
        return model(**inputs).logits


def test_merged_and_adapter_exports_load_with_the_servers_logits(
    server: Server, finished_job: FineTuningJob, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcli.server.bases import resolve_base

    model = finished_job.fine_tuned_model
    assert model is not None
    merged_dir, adapter_dir = tmp_path / "merged", tmp_path / "adapter"
    merged = _export(
        server, tmp_path, "--json", "models", "export", model, "--out", str(merged_dir), "--format", "merged"
    )
    assert merged.exit_code == 0, merged.output
    document = json.loads(merged.stdout)
    assert document["folder"] == str(merged_dir) and any("vllm serve" in c for c in document["serve"])
    names = {f["name"] for f in document["files"]}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "Modelfile", "README.md"} <= names
    assert (
        "FROM ." in (merged_dir / "Modelfile").read_text() and finished_job.id in (merged_dir / "README.md").read_text()
    )
    adapter = _export(server, tmp_path, "models", "export", model, "--out", str(adapter_dir))
    assert adapter.exit_code == 0 and adapter.stdout.strip() == str(adapter_dir), adapter.output
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter_dir.iterdir()}

    base_dir = resolve_base("ftcli/tiny", tmp_path / "bases")
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    plain = AutoModelForCausalLM.from_pretrained(merged_dir).eval()  # plain transformers, nothing of ftcli
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    merged_logits, adapter_logits = _logits(plain, tokenizer), _logits(with_adapter, tokenizer)
    # merging folds B·A into the weights: the same function up to float32 rounding
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)
    assert (merged_logits - _logits(base, tokenizer)).abs().max() > 1e-3  # and it is the fine-tune, not the base
    _answers_greedily_as_the_server_does(server, model, plain, tokenizer)


def _answers_greedily_as_the_server_does(server: Server, model: str, exported: Any, tokenizer: Any) -> None:
    """The server's greedy answer to each question, read back token by token through the exported model: every
    token it chose is the exported model's most likely one there (up to float rounding: a near tie may go either
    way), and where the server's answer ended, the end of the turn is the exported model's choice too."""
    import torch

    from ftcli.data.chat_template import render_prompt
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        for messages in PROMPTS:
            question = messages[:2]
            answer = sdk.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=12)
            choice = answer.choices[0]
            prompt = tokenizer(render_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
            chosen = tokenizer(choice.message.content or "", add_special_tokens=False)["input_ids"]
            assert chosen, "the server gave an empty answer"
            if choice.finish_reason == "stop":
                chosen = [*chosen, tokenizer.eos_token_id]
            with torch.no_grad():
                logits = exported(input_ids=torch.tensor([prompt + chosen])).logits[0, len(prompt) - 1 : -1]
            best, picked = logits.max(-1).values, logits.gather(1, torch.tensor(chosen)[:, None])[:, 0]
            assert (best - picked).max() < 1e-3, (choice.message.content, (best - picked).tolist())


def test_an_export_never_overwrites_without_force_and_unknown_models_are_named(
    server: Server, finished_job: FineTuningJob, tmp_path: Path
) -> None:
    model = finished_job.fine_tuned_model
    assert model is not None
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    refused = _export(server, tmp_path, "models", "export", model, "--out", str(taken))
    assert refused.exit_code == 2 and "already exists" in refused.output and (taken / "mine.txt").exists()
    replaced = _export(server, tmp_path, "models", "export", model, "--out", str(taken), "--force")
    assert replaced.exit_code == 0 and not (taken / "mine.txt").exists()
    missing = _export(
        server, tmp_path, "models", "export", "ft:ftcli/tiny:local::ftjob-none", "--out", str(tmp_path / "x")
    )
    assert missing.exit_code == 1 and "no fine-tuned model" in missing.output and not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nothing half-written left behind


def test_serve_serves_exported_folders_and_trains_further_on_a_merged_one(
    server: Server, finished_job: FineTuningJob, tmp_path: Path
) -> None:
    from ftcli.service import jobs
    from ftcli.service.backends.openai_protocol import OpenAIBackend
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings
    from tests.e2e.conftest import start_server, stop_server
    from tests.local.zorbia import chat_jsonl

    model = finished_job.fine_tuned_model
    assert model is not None
    for name, fmt in (("legal-merged", "merged"), ("legal-adapter", "adapter")):
        done = _export(server, tmp_path, "models", "export", model, "--out", str(tmp_path / name), "--format", fmt)
        assert done.exit_code == 0, done.output
    elsewhere = start_server(
        tmp_path / "elsewhere",
        args=("--model-dir", str(tmp_path / "legal-merged"), "--model-dir", str(tmp_path / "legal-adapter")),
    )
    try:
        with make_client(Settings(kind="compatible", base_url=elsewhere.url)) as sdk:
            listed = {m.id for m in sdk.models.list()}
            assert {"legal-merged", "legal-adapter"} <= listed
            for name in ("legal-merged", "legal-adapter"):
                answer = sdk.chat.completions.create(
                    model=name, messages=[SYSTEM, {"role": "user", "content": QA[0][0]}], max_tokens=8
                )
                assert answer.choices[0].message.content is not None
            data = sdk.files.create(file=("two.jsonl", chat_jsonl(QA[:2]).encode()), purpose="fine-tune")
            created = sdk.fine_tuning.jobs.create(
                model="legal-merged", training_file=data.id, hyperparameters={"n_epochs": 1, "batch_size": 2}
            )
            final = None
            for progress in jobs.wait_for_job(OpenAIBackend(sdk), created.id, interval=0.2):
                final = progress
            assert final is not None and final.status == "succeeded", final
            assert final.job.fine_tuned_model == f"ft:legal-merged:local::{created.id}"
    finally:
        stop_server(elsewhere)
