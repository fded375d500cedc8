"""Continuous batching and adapters side by side (issue 26): answers generated in one batch are the answers each
request gets alone (per-token log probabilities within float tolerance, greedy and seeded), a request that joins
mid-batch or leaves it changes nobody else's answer and frees its row, a batch mixing fine-tunes of one base gives
each request its own adapter's answer, and adapters are evicted least-recently-used under the memory cap (never one
in use). Models: `ftcli/tiny`'s architecture with random weights, LoRA adapters with random weights, built here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402

from ftcli.data.local_bases import build_tiny_tokenizer  # noqa: E402
from ftcli.server.adapters import AdapterCache  # noqa: E402
from ftcli.server.api import chat  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.batching import BatchEngine, Delta, GenerationRequest, Sampling  # noqa: E402
from ftcli.server.inference import LoadedModel, ModelCache  # noqa: E402
from ftcli.server.tiny import build_model  # noqa: E402
from ftcli.server.training import load_base  # noqa: E402

pytestmark = [pytest.mark.local]
TOLERANCE = 1e-4  # nats: float32 sums in another order (padding, batch rows) move a logprob by ~1e-6
PROMPTS = [[5, 6, 7, 8, 9, 10], [3, 4], list(range(20, 50)), [100] * 7]
GREEDY = Sampling(max_tokens=16, min_tokens=16)
SEEDED = Sampling(max_tokens=16, min_tokens=16, temperature=1.0, top_p=0.9, seed=7)
LOCAL = "http://127.0.0.1:8765"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """torch's second thread only slows these tiny models down (and a busy machine, a lot)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    tokenizer = build_tiny_tokenizer()
    return LoadedModel(build_model(len(tokenizer)).eval(), tokenizer, threading.Lock())


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base folder (random tiny weights, the tiny tokenizer) and three LoRA adapters of it, each random."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("models")
    tokenizer = build_tiny_tokenizer()
    build_model(len(tokenizer)).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    folders = {"base": root / "base"}
    for seed, name in enumerate(["one", "two", "three"], start=1):
        model, _ = load_base(root / "base")
        torch.manual_seed(seed)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(model, config).save_pretrained(str(root / name))
        folders[name] = root / name
    return folders


def _answer(stream: Any) -> list[Delta]:
    return list(stream)


def _close(alone: list[Delta], batched: list[Delta]) -> None:
    assert [d.token for d in batched] == [d.token for d in alone]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(alone, batched, strict=True)) < TOLERANCE


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_answers_in_one_batch_are_the_answers_alone(loaded: LoadedModel, sampling: Sampling) -> None:
    engine = loaded.engine
    alone = [_answer(engine.submit(GenerationRequest(prompt, sampling))) for prompt in PROMPTS]
    assert all(len(answer) == 16 for answer in alone)
    engine.widest = 0
    with engine.paused():  # all four wait for the first step: they share every decode step
        streams = [engine.submit(GenerationRequest(prompt, sampling)) for prompt in PROMPTS]
    for answer, stream in zip(alone, streams, strict=True):
        _close(answer, _answer(stream))
    assert engine.widest == len(PROMPTS)  # they did share decode steps
    if sampling.seed is not None:  # another seed is another answer: the seed is what made these equal
        other = _answer(engine.submit(GenerationRequest(PROMPTS[0], Sampling(**{**_fields(sampling), "seed": 8}))))
        assert [d.token for d in other] != [d.token for d in alone[0]]


def _fields(sampling: Sampling) -> dict[str, Any]:
    return {name: getattr(sampling, name) for name in Sampling.__slots__}


def test_a_request_joining_mid_batch_changes_no_answer(loaded: LoadedModel) -> None:
    """The late ones have longer and shorter prompts than the batch's cache: both sides get left-padded."""
    long = Sampling(max_tokens=200, min_tokens=200)
    first_alone = _answer(loaded.engine.submit(GenerationRequest(PROMPTS[0], long)))
    late_alone = [_answer(loaded.engine.submit(GenerationRequest(prompt, GREEDY))) for prompt in PROMPTS[1:3]]
    first = iter(loaded.engine.submit(GenerationRequest(PROMPTS[0], long)))
    started = [next(first) for _ in range(5)]
    late = [loaded.engine.submit(GenerationRequest(prompt, GREEDY)) for prompt in PROMPTS[1:3]]
    for answer, stream in zip(late_alone, late, strict=True):
        _close(answer, _answer(stream))
    _close(first_alone, started + list(first))


def test_a_request_that_leaves_frees_its_row_and_the_others_finish_alike(loaded: LoadedModel) -> None:
    engine = BatchEngine(lambda: loaded.model, loaded.tokenizer, max_batch=2)
    long = Sampling(max_tokens=300, min_tokens=300)
    kept_alone = _answer(engine.submit(GenerationRequest(PROMPTS[0], long)))
    waiting_alone = _answer(engine.submit(GenerationRequest(PROMPTS[2], GREEDY)))

    kept = engine.submit(GenerationRequest(PROMPTS[0], long))
    leaving = engine.submit(GenerationRequest(PROMPTS[1], long))
    waiting = engine.submit(GenerationRequest(PROMPTS[2], GREEDY))  # no row for it: the batch holds two
    deltas = iter(leaving)
    for _ in range(3):
        next(deltas)
    leaving.cancel()  # the client left: its row is free at the next step
    waiting_answer = _answer(waiting)
    made_meanwhile = kept.items.qsize()
    assert made_meanwhile < long.max_tokens  # it got the row while the long answer was still being generated
    _close(waiting_alone, waiting_answer)
    _close(kept_alone, _answer(kept))


def test_a_generation_thread_that_dies_fails_its_answers_and_the_next_request_starts_another(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything that stops the engine's thread outside a step (here: the admission itself raising) is the error of
    every answer waiting on it, not a wait without end; the next request gets a thread of its own."""
    engine = BatchEngine(lambda: loaded.model, loaded.tokenizer)
    monkeypatch.setattr(engine, "_mergeable", lambda: 1 / 0)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            _answer(engine.submit(GenerationRequest(PROMPTS[0], GREEDY)))
        except RuntimeError as error:
            outcome.append(error)

    asker = threading.Thread(target=ask, daemon=True)  # a daemon: a regression waits forever, the test does not
    asker.start()
    asker.join(timeout=60)
    assert len(outcome) == 1 and "generation stopped: ZeroDivisionError" in str(outcome[0]), outcome
    monkeypatch.undo()
    assert len(_answer(engine.submit(GenerationRequest(PROMPTS[0], GREEDY)))) > 0


def test_a_prompt_whose_prefill_fails_fails_alone_and_the_batch_goes_on(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer's prefill that raises (e.g. out of memory on a long prompt) is that request's error; the answers
    already in the batch finish as they would have."""
    poison = PROMPTS[3]
    sampling = Sampling(max_tokens=40, min_tokens=40)
    alone = _answer(loaded.engine.submit(GenerationRequest(PROMPTS[0], sampling)))
    engine = BatchEngine(lambda: loaded.model, loaded.tokenizer)
    forward = engine._forward

    def failing_on_the_poison(model: Any, adapters: list[str | None], **inputs: Any) -> Any:
        if poison in inputs["input_ids"].tolist():
            raise MemoryError("the poison prompt's prefill")
        return forward(model, adapters, **inputs)

    monkeypatch.setattr(engine, "_forward", failing_on_the_poison)
    running = iter(engine.submit(GenerationRequest(PROMPTS[0], sampling)))
    first = next(running)
    with pytest.raises(MemoryError, match="poison"):
        _answer(engine.submit(GenerationRequest(poison, GREEDY)))
    _close(alone, [first, *running])


def test_a_stop_event_ends_an_answer_at_the_next_step(loaded: LoadedModel) -> None:
    stop = threading.Event()
    engine = loaded.engine
    stream = engine.submit(GenerationRequest(PROMPTS[0], Sampling(max_tokens=500, min_tokens=500), stop=stop))
    deltas = iter(stream)
    next(deltas)
    with engine.paused():  # between two steps
        stop.set()
        made = stream.items.qsize()
    assert len(list(deltas)) == made < 499  # not one token more


def test_a_mixed_batch_gives_each_request_its_own_adapters_answer(folders: dict[str, Path]) -> None:
    from peft import PeftModel

    prompt = PROMPTS[0]
    references = {}
    for name in ["one", "two", None]:
        model, _ = load_base(folders["base"])
        if name is not None:
            model = PeftModel.from_pretrained(model, folders[name])
        output = model.eval().generate(
            torch.tensor([prompt]), max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0
        )
        references[name] = output[0, len(prompt) :].tolist()
    assert len({tuple(tokens) for tokens in references.values()}) == 3  # three clearly different models

    cache = ModelCache()
    models = {name: cache.get(folders["base"], folders[name] if name else None) for name in ["one", "two", None]}
    assert len({id(m.adapters) for m in models.values()}) == 1  # one copy of the base for all three
    for name, model in models.items():  # a caller of the model itself gets its request's adapter too
        with torch.no_grad():
            assert int(model.forward(input_ids=torch.tensor([prompt])).logits[0, -1].argmax()) == references[name][0]
    sampling = Sampling(max_tokens=12, min_tokens=12)
    alone = {name: _answer(m.submit(prompt, sampling, threading.Event())) for name, m in models.items()}
    engine = models[None].engine
    engine.widest = 0
    with engine.paused():  # all three wait, then share every decode step
        streams = {name: m.submit(prompt, sampling, threading.Event()) for name, m in models.items()}
    for name, stream in streams.items():
        answer = _answer(stream)
        assert [d.token for d in answer] == references[name], name
        _close(alone[name], answer)
    assert engine.widest == 3


def test_adapters_are_evicted_least_recently_used_under_the_cap(folders: dict[str, Path]) -> None:
    model, tokenizer = load_base(folders["base"])
    adapters = AdapterCache(model.eval(), tokenizer, limit_bytes=1)
    one = adapters.activate(folders["one"])
    size = adapters.size
    adapters.limit_bytes = 2 * size  # room for two
    adapters.activate(folders["two"])
    adapters.activate(folders["one"])  # used again: "two" is now the least recently used
    adapters.activate(folders["three"])
    assert adapters.loaded == [folders["one"], folders["three"]]
    assert len(adapters.model.peft_config) == 2 and adapters.size == 2 * size  # its weights left memory too

    # an adapter with an answer in flight stays, over the cap, until nothing uses it
    stop = threading.Event()
    in_flight = adapters.submit(
        folders["one"],
        lambda name: GenerationRequest(PROMPTS[0], Sampling(max_tokens=1000, min_tokens=1000), name, stop),
    )
    deltas = iter(in_flight)
    next(deltas)
    with adapters.engine.paused():  # the answer can't end meanwhile, however fast the machine
        adapters.activate(folders["two"])
        adapters.activate(folders["three"])
    assert folders["one"] in adapters.loaded and adapters.model.peft_config.keys() >= {one}
    stop.set()
    list(deltas)
    adapters.activate(folders["two"])  # the next load evicts it
    assert adapters.loaded == [folders["three"], folders["two"]]


def test_a_forgotten_adapter_is_loaded_again_from_its_folder(folders: dict[str, Path]) -> None:
    cache = ModelCache()
    before = _answer(cache.get(folders["base"], folders["one"]).submit(PROMPTS[0], GREEDY, threading.Event()))
    cache.get(folders["base"], folders["two"])
    cache.forget(folders["one"])
    loaded = cache.get(folders["base"], folders["two"])
    assert loaded.adapters is not None and loaded.adapters.loaded == [folders["two"]]
    again = _answer(cache.get(folders["base"], folders["one"]).submit(PROMPTS[0], GREEDY, threading.Event()))
    _close(before, again)


def test_concurrent_chat_requests_are_answered_in_one_batch(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `ftcli eval --parallel N` sends (N requests at once) shares the server's decode steps."""
    monkeypatch.setattr(chat, "_resolve", lambda _store, _name: (folders["base"], None))
    app = create_app(tmp_path / "data")
    body = {"model": "tiny", "max_tokens": 20, "min_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(app, base_url=LOCAL) as client:
        alone = client.post("/v1/chat/completions", json=body).json()
        engine = app.state.models.get(folders["base"], None).engine
        engine.widest = 0
        answers: list[Any] = []
        with engine.paused():
            askers = [
                threading.Thread(target=lambda: answers.append(client.post("/v1/chat/completions", json=body)))
                for _ in range(4)
            ]
            for asker in askers:
                asker.start()
            _wait_for(lambda: engine.submitted >= 5)
        for asker in askers:
            asker.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["choices"] == alone["choices"] for a in answers)
    assert engine.widest >= 2


def _wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)
