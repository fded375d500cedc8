"""`ftcli serve --engine vllm` (issue 26 point 3): vLLM behind the engine seam. On a CPU, vLLM's AsyncLLM is replaced
at the seam by a fake that records what it is asked (SamplingParams' keywords, the LoRARequest, the request id) and
yields outputs as vLLM's DELTA outputs do: each request's sampling maps onto vLLM's, each adapter folder onto a LoRA
module of a stable id, a client that leaves aborts its request, and the chat route answers through it. `--engine vllm`
where vLLM can't run is refused at start with the reason. Where a CUDA GPU and vLLM are there, the real engine
answers and aborts (the allowed skip elsewhere)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ftcli.cli.app import app as cli  # noqa: E402
from ftcli.server import hardware  # noqa: E402
from ftcli.server.api import chat  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.batching import GenerationRequest, Sampling  # noqa: E402
from ftcli.server.hardware import UnsupportedSetting, serving_engine  # noqa: E402
from ftcli.server.inference import ModelCache  # noqa: E402
from ftcli.server.vllm_engine import (  # noqa: E402
    VllmApi,
    VllmEngine,
    VllmSettings,
    VllmUnavailable,
    sampling_arguments,
)

pytestmark = [pytest.mark.local]
LOCAL = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class Params:
    """Stands for vllm.SamplingParams: the keywords it was built with."""

    given: dict[str, Any]


@dataclass(frozen=True)
class Lora:
    """Stands for vllm.lora.request.LoRARequest."""

    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass(frozen=True)
class Logprob:
    logprob: float


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass(frozen=True)
class Output:
    outputs: list[Completion]
    finished: bool


API = VllmApi(sampling_params=lambda **given: Params(given), lora_request=Lora, delta_kind="DELTA")


@dataclass
class FakeAsyncLLM:
    """vLLM's AsyncLLM as ftcli uses it: one token a step from `tokens` (each the text `words[token]`), as DELTA
    outputs with the chosen token's logprob, up to max_tokens; `endless`: after the first token it waits forever."""

    words: dict[int, str]
    endless: bool = False
    asked: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # requests whose generator was closed
    removed: list[int] = field(default_factory=list)
    shut: bool = False
    model_config: Any = None  # vLLM's ModelConfig: its max_model_len

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[Any]:
        self.asked.append({"prompt": prompt, "params": sampling_params, "id": request_id, "lora": lora_request})
        tokens = list(self.words)
        most = sampling_params.given["max_tokens"]
        try:
            for index in range(most):
                token = tokens[index % len(tokens)]
                yield Output([Completion(self.words[token], [token], [{token: Logprob(-0.25 * (index + 1))}])], False)
                if self.endless:
                    await asyncio.sleep(3600)
                await asyncio.sleep(0)
            yield Output([Completion("", [], [])], True)
        finally:
            self.closed.append(request_id)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def remove_lora(self, lora_id: int) -> bool:
        self.removed.append(lora_id)
        return True

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture
def fake() -> FakeAsyncLLM:
    return FakeAsyncLLM({11: "Hello", 12: " world", 13: " STOP", 14: " more"})


@pytest.fixture
def engine(fake: FakeAsyncLLM) -> Iterator[VllmEngine]:
    running = VllmEngine(lambda: fake, API)
    yield running
    running.close()


def _wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_greedy_sampling_maps_onto_vllms_greedy() -> None:
    for greedy in (Sampling(max_tokens=9), Sampling(temperature=0.7, top_p=0.0), Sampling(temperature=1e-7)):
        given = sampling_arguments(greedy)
        assert (given["temperature"], given["top_p"]) == (0.0, 1.0)  # vLLM wants top_p in (0, 1]


def test_every_setting_of_a_request_reaches_vllms_sampling_params() -> None:
    sampling = Sampling(
        max_tokens=40,
        min_tokens=5,
        temperature=0.8,
        top_p=0.9,
        seed=123,
        stop=("\n\n", "END"),
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )
    assert sampling_arguments(sampling, logit_bias={50256: -100.0}) == {
        "n": 1,
        "max_tokens": 40,
        "min_tokens": 5,
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": 123,
        "stop": ["\n\n", "END"],
        "include_stop_str_in_output": False,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "skip_special_tokens": True,
        "logprobs": 0,
        "logit_bias": {50256: -100.0},
    }
    assert sampling_arguments(Sampling())["stop"] is None and "logit_bias" not in sampling_arguments(Sampling())


def test_an_answer_streams_vllms_deltas_with_their_tokens_and_logprobs(engine: VllmEngine, fake: FakeAsyncLLM) -> None:
    request = GenerationRequest([1, 2, 3], Sampling(max_tokens=3, temperature=0.5, seed=9))
    deltas = list(engine.submit(request))
    assert [(d.text, d.token, d.logprob) for d in deltas] == [
        ("Hello", 11, -0.25),
        (" world", 12, -0.5),
        (" STOP", 13, -0.75),
    ]
    (asked,) = fake.asked
    assert asked["prompt"] == {"prompt_token_ids": [1, 2, 3]} and asked["lora"] is None
    assert asked["params"].given == {**sampling_arguments(request.sampling), "output_kind": "DELTA"}
    assert request.stop.is_set()  # over: the request says so, as the built-in engine's do


def test_each_adapter_folder_is_a_lora_module_of_its_own_stable_id(engine: VllmEngine, fake: FakeAsyncLLM) -> None:
    one, two = "/data/models/ft-one/adapter", "/data/models/ft-two/adapter"
    for adapter in (one, two, one, None):
        list(engine.submit(GenerationRequest([1], Sampling(max_tokens=1), adapter)))
    assert [asked["lora"] for asked in fake.asked] == [Lora(one, 1, one), Lora(two, 2, two), Lora(one, 1, one), None]
    assert len({asked["id"] for asked in fake.asked}) == 4  # every request its own id in vLLM
    engine.forget(Path(one))  # its model deleted: vLLM lets go of it, and a new folder there is a new module
    _wait_for(lambda: fake.removed == [1])
    assert engine.lora_request(one) == Lora(one, 3, one)


def test_a_client_that_leaves_aborts_its_request_in_vllm(engine: VllmEngine, fake: FakeAsyncLLM) -> None:
    fake.endless = True
    request = GenerationRequest([1], Sampling(max_tokens=100))
    stream = iter(engine.submit(request))
    assert next(stream).token == 11
    request.stop.set()  # what the chat route does when its client disconnects
    assert list(stream) == []  # the stream ends (without the 99 tokens nobody reads)
    _wait_for(lambda: fake.aborted == ["ftcli-1"])
    assert fake.closed == ["ftcli-1"]  # vLLM's generator closed: the request no longer holds a batch slot


def test_a_stream_cancelled_by_its_reader_aborts_too(engine: VllmEngine, fake: FakeAsyncLLM) -> None:
    fake.endless = True
    stream = engine.submit(GenerationRequest([1], Sampling(max_tokens=100)))
    reading = iter(stream)
    next(reading)
    stream.cancel()
    _wait_for(lambda: fake.aborted == ["ftcli-1"])


def test_a_request_that_left_before_it_started_never_reaches_vllm(engine: VllmEngine, fake: FakeAsyncLLM) -> None:
    request = GenerationRequest([1], Sampling(max_tokens=4))
    request.stop.set()
    assert list(engine.submit(request)) == []
    assert fake.asked == []


def test_answers_in_flight_when_the_engine_stops_end_with_the_reason(fake: FakeAsyncLLM) -> None:
    fake.endless = True
    engine = VllmEngine(lambda: fake, API)
    stream = iter(engine.submit(GenerationRequest([1], Sampling(max_tokens=100))))
    next(stream)
    engine.close()
    with pytest.raises(VllmUnavailable, match="another base model"):
        next(stream)
    assert fake.shut


def test_an_adapter_of_a_rank_vllm_was_not_started_for_is_refused(engine: VllmEngine, tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 128}))
    with pytest.raises(VllmUnavailable, match="rank 128.*up to 64"):
        engine.check_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16}))
    engine.check_adapter(tmp_path)


def test_chat_completions_are_answered_through_vllm(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeAsyncLLM
) -> None:
    """The whole chat route over the seam: the prompt's token ids, the request's settings, the adapter as a LoRA
    module, the stop sequence cut from the answer, one engine per base."""
    adapter = tmp_path / "ft-legal"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    started: list[tuple[Path, VllmSettings]] = []

    def start(base: Path, settings: VllmSettings) -> VllmEngine:
        started.append((base, settings))
        return VllmEngine(lambda: fake, API, settings=settings)

    settings = VllmSettings(gpu_memory_fraction=0.3)
    app = create_app(tmp_path / "data")
    app.state.models = ModelCache(vllm=settings, start_vllm=start)
    resolved = {"base": (tiny_base, None), "tuned": (tiny_base, adapter)}
    monkeypatch.setattr(chat, "_resolve", lambda _store, name: resolved[name])
    messages = [{"role": "user", "content": "hi"}]
    body = {"messages": messages, "max_tokens": 4, "temperature": 0.6, "seed": 5, "stop": [" STOP"]}
    with TestClient(app, base_url=LOCAL) as client:
        plain = client.post("/v1/chat/completions", json={**body, "model": "base"})
        tuned = client.post("/v1/chat/completions", json={**body, "model": "tuned", "presence_penalty": 1.0})
        streamed = client.post("/v1/chat/completions", json={**body, "model": "tuned", "stream": True})
    assert plain.status_code == tuned.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"] == "Hello world"  # ends before the stop sequence
    assert _streamed_content(streamed.text) == "Hello world"
    assert started == [(tiny_base, settings)]  # one engine for the base, its fine-tunes LoRA modules of it
    first, second, _ = fake.asked
    loaded = ModelCache().get(tiny_base, None)
    from ftcli.server.inference import prompt_ids

    assert first["prompt"]["prompt_token_ids"] == prompt_ids(loaded, messages)["input_ids"][0].tolist()
    assert first["lora"] is None and second["lora"] == Lora(str(adapter), 1, str(adapter))
    given = second["params"].given
    assert (given["temperature"], given["seed"], given["stop"], given["max_tokens"]) == (0.6, 5, [" STOP"], 4)
    assert given["presence_penalty"] == 1.0
    assert fake.shut  # the server's shutdown stopped vLLM (its GPU memory back)


def test_a_prompt_longer_than_vllms_context_is_refused_before_it_reaches_vllm(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeAsyncLLM
) -> None:
    """vLLM's max_model_len (it may be below the model's positions, where its KV cache would not fit) bounds the
    prompt, as the model's own context does for the built-in engine: a 400 naming it, not vLLM's error as a 500."""
    fake.model_config = SimpleNamespace(max_model_len=64)
    app = create_app(tmp_path / "data")
    app.state.models = ModelCache(
        vllm=VllmSettings(), start_vllm=lambda _base, _settings: VllmEngine(lambda: fake, API)
    )
    monkeypatch.setattr(chat, "_resolve", lambda _store, _name: (tiny_base, None))
    body = {"model": "base", "max_tokens": 16}
    with TestClient(app, base_url=LOCAL) as client:
        short = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "hi"}]})
        long = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "hi " * 60}]})
    assert short.status_code == 200, short.text
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded", long.text
    assert "at most 48 with 16 to generate" in long.json()["error"]["message"]
    assert len(fake.asked) == 1


def _streamed_content(sse: str) -> str:
    events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: {")]
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])


def test_engine_choice_follows_the_machine() -> None:
    assert serving_engine("auto", cuda=True, vllm_installed=True) == "vllm"
    assert serving_engine("auto", cuda=False, vllm_installed=True) == "builtin"
    assert serving_engine("auto", cuda=True, vllm_installed=False) == "builtin"
    assert serving_engine("builtin", cuda=True, vllm_installed=True) == "builtin"
    assert serving_engine("vllm", cuda=True, vllm_installed=True) == "vllm"
    with pytest.raises(UnsupportedSetting, match="no CUDA GPU") as refused:
        serving_engine("vllm", cuda=False, vllm_installed=True)
    assert "not installed" not in str(refused.value)
    with pytest.raises(UnsupportedSetting, match="no CUDA GPU; the vllm package is not installed"):
        serving_engine("vllm", cuda=False, vllm_installed=False)
    with pytest.raises(UnsupportedSetting, match="one of auto, builtin, vllm"):
        serving_engine("tgi", cuda=True, vllm_installed=True)


@pytest.mark.parametrize("arguments", [["--engine", "vllm"], ["--gpu-memory-fraction", "1.0"]])
def test_serve_refuses_what_it_cannot_honour_at_start(
    arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware, "vllm_installed", lambda: False)  # whatever this machine has
    for name in ("FTCLI_MODEL_ROOTS", "FTCLI_MODEL_DIRS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "")  # serve sets them: restored after the test
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path), "--port", "1", *arguments])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    reason = "vllm package is not installed" if arguments[0] == "--engine" else "between 0 and 1"
    assert reason in " ".join(result.output.split())


GPU = "needs a CUDA GPU with vLLM installed (the vllm engine's real answers)"


def _has_gpu_and_vllm() -> bool:
    import torch

    return torch.cuda.is_available() and hardware.vllm_installed()


@pytest.mark.skipif(not _has_gpu_and_vllm(), reason=GPU)
def test_vllm_answers_and_aborts_on_a_gpu(tiny_base: Path) -> None:
    from ftcli.server.vllm_engine import start_vllm

    engine = start_vllm(tiny_base, VllmSettings(gpu_memory_fraction=0.2))
    try:
        deltas = list(engine.submit(GenerationRequest([5, 6, 7], Sampling(max_tokens=8, min_tokens=8))))
        assert len(deltas) == 8 and all(math.isfinite(d.logprob) and d.logprob <= 0 for d in deltas)
        again = list(engine.submit(GenerationRequest([5, 6, 7], Sampling(max_tokens=8, min_tokens=8))))
        assert [d.token for d in again] == [d.token for d in deltas]  # greedy: the same answer
        request = GenerationRequest([5, 6, 7], Sampling(max_tokens=4000, min_tokens=4000))
        stream = iter(engine.submit(request))
        next(stream)
        request.stop.set()
        assert len(list(stream)) < 3990  # aborted: not generated to the end
    finally:
        engine.close()
