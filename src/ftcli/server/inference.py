"""Generation for chat completions: a base model, or a base with a LoRA adapter; streamed as text deltas. Every
answer goes through its model's batching engine (server/batching.py), so answers asked at once are generated side by
side; a base's fine-tunes share one copy of its weights (server/adapters.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftcli.data.chat_template import THINK_OPEN, render_prompt, thinks_in_tags
from ftcli.server.adapters import DEFAULT_ADAPTER_CACHE_MB, MIB, AdapterCache
from ftcli.server.batching import BASE_ADAPTER, BatchEngine, GenerationRequest, Sampling, TokenStream, penalized
from ftcli.server.training import load_base

__all__ = ["LoadedModel", "ModelCache", "Sampling", "generate_stream", "penalized"]


@dataclass
class LoadedModel:
    """A model as one request sees it: its base's weights (shared with the base's other fine-tunes) and, for a
    fine-tune, which adapter. `model` is shared: the engine names each answer's adapter; a caller of `model` itself
    gets the adapter of the latest `ModelCache.get`, or calls `forward`."""

    model: Any
    tokenizer: Any
    lock: threading.Lock  # (kept for callers that build one; the engine batches instead of taking turns)
    thinking: bool = False  # writes its reasoning in <think> blocks (its template says so): answered apart
    adapter: Path | None = None  # the fine-tune's adapter folder (None: the base itself)
    adapters: AdapterCache | None = None  # the base's adapters and engine, when loaded through ModelCache
    engine: BatchEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = (
            self.adapters.engine if self.adapters is not None else BatchEngine(lambda: self.model, self.tokenizer)
        )

    def submit(self, prompt: list[int], sampling: Sampling, stop: threading.Event) -> TokenStream:
        def request(adapter: str | None) -> GenerationRequest:
            return GenerationRequest(prompt, sampling, adapter, stop)

        if self.adapters is None:
            return self.engine.submit(request(None))
        return self.adapters.submit(self.adapter, request)

    def forward(self, **inputs: Any) -> Any:
        """The model's own forward, with this request's adapter (or none) whatever the model's active one is."""
        if self.adapters is not None and hasattr(self.adapters.model, "peft_config"):
            rows = int(inputs["input_ids"].shape[0])
            name = self.adapters.activate(self.adapter) if self.adapter is not None else BASE_ADAPTER
            inputs["adapter_names"] = [name] * rows
        return self.adapters.model(**inputs) if self.adapters is not None else self.model(**inputs)


class ModelCache:
    """Keeps the most recently used base in memory (one at a time: CPUs and laptops have little RAM), with the
    adapters of its fine-tunes beside it (at most `adapter_cache_mb` of them, least recently used evicted first).
    A merged model is a base of its own."""

    def __init__(self, adapter_cache_mb: int = DEFAULT_ADAPTER_CACHE_MB) -> None:
        self.adapter_cache_bytes = adapter_cache_mb * MIB
        self._base: str | None = None
        self._loaded: AdapterCache | None = None
        self._thinking = False
        self._lock = threading.Lock()

    def get(self, base: Path, adapter: Path | None) -> LoadedModel:
        with self._lock:
            if self._base != str(base) or self._loaded is None:
                model, tokenizer = load_base(base)
                model.eval()
                self._loaded = AdapterCache(model, tokenizer, limit_bytes=self.adapter_cache_bytes)
                self._base, self._thinking = str(base), thinks_in_tags(tokenizer)
            loaded, thinking = self._loaded, self._thinking
        if adapter is not None:
            loaded.activate(adapter)  # loaded now: a broken adapter fails here, before anything is generated
        return LoadedModel(
            loaded.model, loaded.engine.tokenizer, threading.Lock(), thinking, adapter=adapter, adapters=loaded
        )

    def forget(self, adapter: Path) -> None:
        """The adapter's model was deleted: it is no longer answered from memory."""
        with self._lock:
            loaded = self._loaded
        if loaded is not None:
            loaded.forget(adapter)


def prompt_ids(loaded: LoadedModel, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> Any:
    text = render_prompt(loaded.tokenizer, messages, tools)
    return loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")


def opens_thinking(loaded: LoadedModel, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> bool:
    """Whether the prompt itself opens the think block (some templates end the generation prompt with `<think>`):
    the generated text then starts with reasoning."""
    return loaded.thinking and render_prompt(loaded.tokenizer, messages, tools).rstrip().endswith(THINK_OPEN)


def generate_stream(
    loaded: LoadedModel,
    messages: list[dict[str, Any]],
    sampling: Sampling,
    tools: list[Any] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Yield text deltas as tokens are produced (the answer joins its model's running batch). Generation ends at
    the next step once `stop` is set (a client that left), this iterator is closed, or a stop sequence appears (the
    text yielded ends before it)."""
    abandoned = stop or threading.Event()
    prompt = [int(token) for token in prompt_ids(loaded, messages, tools)["input_ids"][0]]
    stream = loaded.submit(prompt, sampling, abandoned)
    try:
        yield from _until_stop_sequence((delta.text for delta in stream if delta.text), sampling.stop)
    finally:
        abandoned.set()


def _until_stop_sequence(deltas: Iterator[str], stops: tuple[str, ...]) -> Iterator[str]:
    """The deltas up to the first stop sequence; the last few characters are held back while they could still
    begin one, so no part of a stop sequence is ever sent."""
    if not stops:
        yield from deltas
        return
    held_back = max(len(s) for s in stops) - 1
    held = ""
    for delta in deltas:
        held += delta
        found = [index for index in (held.find(s) for s in stops) if index >= 0]
        if found:
            if min(found):
                yield held[: min(found)]
            return
        ready = len(held) - held_back
        if ready > 0:
            yield held[:ready]
            held = held[ready:]
    if held:
        yield held


def count_tokens(loaded: LoadedModel, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    return int(prompt_ids(loaded, messages, tools)["input_ids"].shape[1])


def count_text_tokens(loaded: LoadedModel, text: str) -> int:
    return len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


def finish_reason(completion_tokens: int, sampling: Sampling) -> Literal["length", "stop"]:
    """OpenAI's reasons: "length" when the answer hit max_tokens, else "stop"."""
    return "length" if completion_tokens >= sampling.max_tokens else "stop"
