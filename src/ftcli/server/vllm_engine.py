"""vLLM behind the engine seam of `ftcli serve --engine vllm` (server/batching.py's `Engine`: `submit(request)`
returns a `TokenStream` of `Delta`s; `cancel()` ends it): where a CUDA GPU and the `vllm` package are there, chat
completions are answered by vLLM's AsyncLLM (paged attention, continuous batching, CUDA graphs) instead of the
built-in engine.

Each request's sampling maps onto vLLM's `SamplingParams` (`sampling_arguments`), its fine-tune onto a `LoRARequest`:
every adapter folder gets an integer id of its own the first time it is asked for, and vLLM loads it from the folder
then (no registration at start: a job that just finished answers at once); a deleted model's id is dropped and its
weights removed from vLLM. vLLM takes `gpu_memory_fraction` of the GPU (weights, KV cache, its CUDA graphs), so
training jobs can share the GPU with it.

vLLM's engine is asynchronous: it runs on an event loop of its own in a thread (`ftcli-vllm`), and each answer is
relayed from it to the reader's queue. A client that leaves (its request's `stop` set, or the stream cancelled)
aborts the request in vLLM, which frees its KV cache at once. `vllm` is imported only when the engine starts, so
nothing else needs it installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ftcli.server.batching import _END, Delta, GenerationRequest, Sampling, _Stream

DEFAULT_GPU_MEMORY_FRACTION = 0.5  # the rest of the GPU is left to training jobs
DEFAULT_MAX_LORAS = 4  # adapters in one batch on the GPU (vLLM keeps more in CPU memory)
DEFAULT_MAX_LORA_RANK = 64  # the largest LoRA rank vLLM reserves room for (ftcli's jobs train rank 8 to 32)
STOP_POLL_SECONDS = 0.05  # how often an answer in flight looks whether its client left


class VllmUnavailable(RuntimeError):
    """vLLM can't answer here; the message says why."""


@dataclass(frozen=True, slots=True)
class VllmSettings:
    gpu_memory_fraction: float = DEFAULT_GPU_MEMORY_FRACTION
    max_loras: int = DEFAULT_MAX_LORAS
    max_lora_rank: int = DEFAULT_MAX_LORA_RANK


class AsyncGenerator(Protocol):
    """What ftcli uses of vLLM's AsyncLLM."""

    def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[Any]: ...
    async def abort(self, request_id: str) -> None: ...
    async def remove_lora(self, lora_id: int) -> bool: ...
    def shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VllmApi:
    """The constructors of vLLM's request types (replaced by plain ones in CPU tests)."""

    sampling_params: Callable[..., Any]  # vllm.SamplingParams
    lora_request: Callable[..., Any]  # vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)
    delta_kind: Any  # RequestOutputKind.DELTA: each output holds only what is new since the last

    @classmethod
    def load(cls) -> VllmApi:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind

        return cls(SamplingParams, LoRARequest, RequestOutputKind.DELTA)


def sampling_arguments(sampling: Sampling, logit_bias: dict[int, float] | None = None) -> dict[str, Any]:
    """vLLM's SamplingParams keywords for an answer of the built-in engine's `Sampling`: the same answer's settings.
    Greedy (temperature below ftcli's GREEDY_BELOW, or top_p 0) is vLLM's temperature 0 (top_p must then be in
    (0, 1]); stop sequences end the answer and are not part of it; the log probability of each chosen token comes
    with it (the seam's `Delta.logprob`), as vLLM computes it: under the model, before penalties and temperature."""
    greedy = sampling.greedy
    arguments: dict[str, Any] = {
        "n": 1,
        "max_tokens": sampling.max_tokens,
        "min_tokens": sampling.min_tokens,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "seed": sampling.seed,
        "stop": list(sampling.stop) or None,
        "include_stop_str_in_output": False,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "skip_special_tokens": True,
        "logprobs": 0,  # the chosen token's only
    }
    if logit_bias:
        arguments["logit_bias"] = dict(logit_bias)
    return arguments


def adapter_rank(folder: Path) -> int | None:
    """The LoRA rank an adapter folder was trained with (PEFT's adapter_config.json `r`), None when unreadable."""
    try:
        rank = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("r")
    except (OSError, ValueError, AttributeError):
        return None
    return rank if isinstance(rank, int) else None


class VllmEngine:
    """The `Engine` seam over vLLM's AsyncLLM for one base model (vLLM serves one base per engine; its fine-tunes
    are LoRA modules of it). `start` builds the AsyncLLM; it runs on this engine's own event loop."""

    def __init__(
        self, start: Callable[[], AsyncGenerator], api: VllmApi, *, settings: VllmSettings | None = None
    ) -> None:
        self.api, self.settings = api, settings or VllmSettings()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ftcli-vllm", daemon=True)
        self._thread.start()
        self._ids: dict[str, int] = {}  # adapter folder → its LoRA id in vLLM, stable while the engine runs
        self._last_id = 0
        self._requests = 0
        self._in_flight: set[_Stream] = set()
        self._lock = threading.Lock()

        async def started() -> AsyncGenerator:  # on the loop: AsyncLLM binds its output handler to it
            return start()

        try:
            self._engine = self._call(started())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def max_model_len(self) -> int | None:
        """The longest sequence (prompt and answer) vLLM was started for."""
        length = getattr(getattr(self._engine, "model_config", None), "max_model_len", None)
        return length if isinstance(length, int) else None

    def submit(self, request: GenerationRequest) -> _Stream:
        stream = _Stream(request)
        with self._lock:
            self._requests += 1
            request_id = f"ftcli-{self._requests}"
            self._in_flight.add(stream)
        lora = self.lora_request(request.adapter) if request.adapter is not None else None
        asyncio.run_coroutine_threadsafe(self._answer(request, request_id, lora, stream), self._loop)
        return stream

    def lora_request(self, adapter: str) -> Any:
        """The adapter folder as vLLM's LoRARequest: a new id the first time, the same one after."""
        with self._lock:
            lora_id = self._ids.get(adapter)
            if lora_id is None:
                self._last_id += 1
                lora_id = self._ids[adapter] = self._last_id
        return self.api.lora_request(adapter, lora_id, adapter)

    def check_adapter(self, folder: Path) -> None:
        """Refuse, with the reason, an adapter vLLM was not started to hold (checked before anything generates)."""
        rank = adapter_rank(folder)
        if rank is not None and rank > self.settings.max_lora_rank:
            raise VllmUnavailable(
                f"the adapter {folder.name} has LoRA rank {rank}; vLLM was started for ranks up to "
                f"{self.settings.max_lora_rank} (serve with --engine builtin to answer it)"
            )

    def forget(self, adapter: Path) -> None:
        """The adapter's model was deleted: its id is dropped (a new folder at that path gets a new one) and vLLM
        lets go of its weights."""
        with self._lock:
            lora_id = self._ids.pop(str(adapter), None)
        if lora_id is not None:
            asyncio.run_coroutine_threadsafe(self._engine.remove_lora(lora_id), self._loop)

    def close(self) -> None:
        """vLLM stopped and its GPU memory freed; answers still in flight end with an error that says so."""
        with self._lock:
            left, self._in_flight = self._in_flight, set()
        for stream in left:  # before their tasks end (each puts its end after this)
            stream.items.put(VllmUnavailable("vLLM was stopped (the server switched to another base model)"))
        with contextlib.suppress(Exception):  # a broken engine still lets its loop go
            self._engine.shutdown()
        self._call(_cancel_all())
        self._stop_loop()

    def _call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _answer(self, request: GenerationRequest, request_id: str, lora: Any, stream: _Stream) -> None:
        """Relay the answer to the stream until it ends or its client leaves (then vLLM aborts it)."""
        try:
            if request.stop.is_set():
                return
            params = self.api.sampling_params(**sampling_arguments(request.sampling), output_kind=self.api.delta_kind)
            relay = asyncio.ensure_future(self._relay(request, request_id, params, lora, stream))
            left = asyncio.ensure_future(_until_set(request.stop))
            await asyncio.wait({relay, left}, return_when=asyncio.FIRST_COMPLETED)
            left.cancel()
            if not relay.done():  # the client left: vLLM drops the request and its KV cache now
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
                await self._engine.abort(request_id)
            else:
                relay.result()  # raises what generation raised
        except Exception as exc:  # noqa: BLE001 (the reader reports it, as the built-in engine's do)
            stream.items.put(exc)
        finally:
            with self._lock:
                self._in_flight.discard(stream)
            stream.items.put(_END)

    async def _relay(
        self, request: GenerationRequest, request_id: str, params: Any, lora: Any, stream: _Stream
    ) -> None:
        prompt = {"prompt_token_ids": list(request.prompt)}
        async for output in self._engine.generate(prompt, params, request_id, lora_request=lora):
            for completion in output.outputs[:1]:
                tokens = list(completion.token_ids)
                chosen = completion.logprobs or []
                for index, token in enumerate(tokens):
                    text = completion.text if index == 0 else ""  # a delta's text comes with its first token
                    stream.items.put(Delta(text, token, _logprob(chosen, index, token)))
            if output.finished:
                request.stop.set()  # ended: whoever watches the request sees it over
                return


def _logprob(chosen: Any, index: int, token: int) -> float:
    """The chosen token's log probability in vLLM's output (a dict of token → Logprob per position); NaN if vLLM
    sent none for it (never a made-up number)."""
    if index >= len(chosen) or token not in chosen[index]:
        return math.nan
    return float(chosen[index][token].logprob)


async def _cancel_all() -> None:
    """Every task on the engine's loop but this one cancelled, and ended."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _until_set(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(STOP_POLL_SECONDS)


def start_vllm(base: Path, settings: VllmSettings) -> VllmEngine:
    """vLLM's engine for `base` (a model folder) with LoRA enabled, taking `gpu_memory_fraction` of the GPU."""
    try:
        from vllm import AsyncEngineArgs
    except ImportError as exc:
        raise VllmUnavailable(f"vLLM is not installed ({exc}): pip install vllm, or serve --engine builtin") from None
    try:
        from vllm.v1.engine.async_llm import AsyncLLM as engine_class
    except ImportError:  # an older vLLM: the v0 engine under its old name
        from vllm import AsyncLLMEngine as engine_class

    arguments = AsyncEngineArgs(
        model=str(base),
        tokenizer=str(base),
        enable_lora=True,
        max_loras=settings.max_loras,
        max_lora_rank=settings.max_lora_rank,
        gpu_memory_utilization=settings.gpu_memory_fraction,
    )
    return VllmEngine(lambda: engine_class.from_engine_args(arguments), VllmApi.load(), settings=settings)
