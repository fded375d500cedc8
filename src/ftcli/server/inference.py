"""Generation for chat completions: a base model, or a base with a LoRA adapter; streamed as text deltas. Every
answer goes through its model's batching engine (server/batching.py), so answers asked at once are generated side by
side; a base's fine-tunes share one copy of its weights (server/adapters.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from ftcli.data.chat_template import THINK_OPEN, render_prompt, thinks_in_tags
from ftcli.server.adapters import DEFAULT_ADAPTER_CACHE_MB, MIB, AdapterCache
from ftcli.server.batching import BASE_ADAPTER, BatchEngine, GenerationRequest, Sampling, TokenStream, penalized
from ftcli.server.training import load_base

if TYPE_CHECKING:
    from ftcli.server.vllm_engine import VllmEngine, VllmSettings

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
    vllm: VllmEngine | None = None  # `serve --engine vllm`: vLLM answers (then `model` holds only the config)
    engine: BatchEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = (
            self.adapters.engine if self.adapters is not None else BatchEngine(lambda: self.model, self.tokenizer)
        )

    def submit(self, prompt: list[int], sampling: Sampling, stop: threading.Event) -> TokenStream:
        def request(adapter: str | None) -> GenerationRequest:
            return GenerationRequest(prompt, sampling, adapter, stop)

        if self.vllm is not None:  # the adapter by its folder: vLLM loads it as a LoRA module of its own id
            return self.vllm.submit(request(str(self.adapter) if self.adapter is not None else None))
        if self.adapters is None:
            return self.engine.submit(request(None))
        return self.adapters.submit(self.adapter, request)

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt and answer) one sequence may hold: vLLM's max_model_len where vLLM answers (it
        may be below the model's own, e.g. where its KV cache would not fit), else the model's positions."""
        if self.vllm is not None and self.vllm.max_model_len is not None:
            return self.vllm.max_model_len
        context = getattr(self.model.config, "max_position_embeddings", None)
        return context if isinstance(context, int) else None

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

    def __init__(
        self,
        adapter_cache_mb: int = DEFAULT_ADAPTER_CACHE_MB,
        *,
        vllm: VllmSettings | None = None,
        start_vllm: Callable[[Path, VllmSettings], VllmEngine] | None = None,
    ) -> None:
        """`vllm`: answer through vLLM (`serve --engine vllm`) with these settings; `start_vllm` builds its engine
        for a base (server/vllm_engine.start_vllm; tests give a fake)."""
        self.adapter_cache_bytes = adapter_cache_mb * MIB
        self._base: str | None = None
        self._loaded: AdapterCache | None = None
        self._thinking = False
        self._lock = threading.Lock()
        self._vllm_settings = vllm
        self._start_vllm = start_vllm
        self._vllm: tuple[VllmEngine, Any, Any] | None = None  # the engine, the base's config and tokenizer

    @property
    def engine_name(self) -> str:
        return "vllm" if self._vllm_settings is not None else "builtin"

    def get(self, base: Path, adapter: Path | None) -> LoadedModel:
        if self._vllm_settings is not None:
            return self._get_vllm(base, adapter, self._vllm_settings)
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
            loaded, served = self._loaded, self._vllm
        if loaded is not None:
            loaded.forget(adapter)
        if served is not None:
            served[0].forget(adapter)

    def close(self) -> None:
        """vLLM's engine stopped (the built-in engine's threads end by themselves when idle)."""
        with self._lock:
            served, self._vllm, self._base = self._vllm, None, None
        if served is not None:
            served[0].close()

    def _get_vllm(self, base: Path, adapter: Path | None, settings: VllmSettings) -> LoadedModel:
        """The base in vLLM (one base at a time: vLLM holds its share of the GPU for it; a switch stops the
        engine of the previous base), its tokenizer and config here for the chat route's prompt and limits."""
        from transformers import AutoConfig, AutoTokenizer

        from ftcli.server.vllm_engine import start_vllm

        with self._lock:
            if self._base != str(base) or self._vllm is None:
                if self._vllm is not None:
                    self._vllm[0].close()
                    self._vllm, self._base = None, None
                config = AutoConfig.from_pretrained(base, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
                engine = (self._start_vllm or start_vllm)(base, settings)
                self._vllm, self._base, self._thinking = (
                    (engine, config, tokenizer),
                    str(base),
                    thinks_in_tags(tokenizer),
                )
            (engine, config, tokenizer), thinking = self._vllm, self._thinking
        if adapter is not None:
            engine.check_adapter(adapter)  # refused now, with the reason, before anything is generated
        return LoadedModel(SimpleNamespace(config=config), tokenizer, threading.Lock(), thinking, adapter, vllm=engine)


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
