"""Generation for chat completions: a base model, or a base with a LoRA adapter; streamed as text deltas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftcli.data.chat_template import THINK_OPEN, render_prompt, thinks_in_tags
from ftcli.server.training import load_base


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    lock: threading.Lock
    thinking: bool = False  # writes its reasoning in <think> blocks (its template says so): answered apart


class ModelCache:
    """Keeps the most recently used model in memory (one at a time: CPUs and laptops have little RAM)."""

    def __init__(self) -> None:
        self._key: tuple[str, str | None] | None = None
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    def get(self, base: Path, adapter: Path | None) -> LoadedModel:
        key = (str(base), str(adapter) if adapter else None)
        with self._lock:
            if self._key != key or self._loaded is None:
                model, tokenizer = load_base(base)
                if adapter is not None:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, adapter)
                model.eval()
                loaded = LoadedModel(model, tokenizer, threading.Lock(), thinking=thinks_in_tags(tokenizer))
                self._key, self._loaded = key, loaded
            return self._loaded

    def forget(self, adapter: Path) -> None:
        """Drop the model in memory if it is this adapter's (the model was deleted)."""
        with self._lock:
            if self._key is not None and self._key[1] == str(adapter):
                self._key, self._loaded = None, None


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int = 256
    min_tokens: int = 0  # vLLM's extension: no end of answer before this many tokens
    temperature: float = 0.0  # 0 (below GREEDY_BELOW): greedy, deterministic
    top_p: float = 1.0  # 0: only the most likely token (greedy)
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (not included)
    presence_penalty: float = 0.0  # OpenAI's: subtracted from the logit of every token already generated
    frequency_penalty: float = 0.0  # OpenAI's: subtracted once per time a token was already generated


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
    """Yield text deltas as tokens are produced (transformers' own generate + streamer, in a thread). Generation
    ends at the next token once `stop` is set (a client that left), this iterator is closed, or a stop sequence
    appears (the text yielded ends before it)."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        StoppingCriteria,
        StoppingCriteriaList,
        TextIteratorStreamer,
    )

    abandoned = stop or threading.Event()

    class WhenAbandoned(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:  # noqa: ARG002 (its signature)
            return torch.full((input_ids.shape[0],), abandoned.is_set(), dtype=torch.bool, device=input_ids.device)

    inputs = prompt_ids(loaded, messages, tools)
    prompt_length = int(inputs["input_ids"].shape[1])

    class Penalties(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return penalized(scores, input_ids[:, prompt_length:], sampling)

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    options: dict[str, Any] = {
        "max_new_tokens": sampling.max_tokens,
        "min_new_tokens": sampling.min_tokens,
        "streamer": streamer,
        "eos_token_id": loaded.tokenizer.eos_token_id,
        "pad_token_id": loaded.tokenizer.pad_token_id,
        # a reader that goes away (a client that disconnected) stops generation at the next token: the lock is
        # not held for tokens nobody reads
        "stopping_criteria": StoppingCriteriaList([WhenAbandoned()]),
    }
    if sampling.presence_penalty or sampling.frequency_penalty:
        options["logits_processor"] = LogitsProcessorList([Penalties()])
    if sampling.temperature >= GREEDY_BELOW and sampling.top_p > 0:
        options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        options.update(do_sample=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with loaded.lock, torch.no_grad():
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                loaded.model.generate(**inputs, **options)
        except BaseException as exc:  # surfaced in the caller's thread below
            errors.append(exc)
            streamer.end()  # type: ignore[no-untyped-call]

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        yield from _until_stop_sequence((delta for delta in streamer if delta), sampling.stop)
    finally:
        abandoned.set()
    worker.join()
    if errors:
        raise errors[0]


GREEDY_BELOW = 1e-6  # a lower temperature is greedy decoding (its limit), without logits divided into infinity


def penalized(scores: Any, generated: Any, sampling: Sampling) -> Any:
    """OpenAI's presence and frequency penalties on the next token's logits: each token already generated (in
    `generated`, the answer's ids so far) loses `presence_penalty` once and `frequency_penalty` per time it came."""
    import torch

    counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
    return scores - counts * sampling.frequency_penalty - (counts > 0).to(scores.dtype) * sampling.presence_penalty


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
