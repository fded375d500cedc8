"""Continuous batching for `ftcli serve`: one scheduler thread per model in memory runs every answer in flight as
one batch, a decode step at a time.

Requests that arrive while others generate are prefilled alone (their prompt's keys and values computed as if they
were the only request) and merged into the running batch between two decode steps: the batch's KV cache is a
transformers `DynamicCache` whose rows are left-padded to one length, with an attention mask that hides the padding
and position ids of each row's own. Every row keeps its own sampling (max_tokens, min_tokens, temperature, top_p,
its own seeded `torch.Generator`, penalties), its own LoRA adapter (PEFT's `adapter_names`: one base, many
fine-tunes in one batch) and leaves the batch as soon as it ends, or at the next step once its client left.

Why not transformers' own continuous batching (`generation/continuous_batching`): it samples with one generator and
one `do_sample` for the whole batch (no seeded answer per request, no greedy and sampled answers side by side), has
no per-request min_tokens or penalties, knows nothing of PEFT's per-request adapters, and is built around paged
attention for accelerators. What ftcli needs here is a few hundred lines over the model's own forward.

The seam (`Engine`): `submit(request)` returns a `TokenStream` (an iterator of `Delta`s; `cancel()` ends it), so
another engine (vLLM) can stand in its place.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

GREEDY_BELOW = 1e-6  # a lower temperature is greedy decoding (its limit), without logits divided into infinity
MAX_BATCH = 16  # answers generated side by side per model; more wait for a row (a CPU gains little past this)
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


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

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW or self.top_p <= 0


def penalized(scores: Any, generated: Any, sampling: Sampling) -> Any:
    """OpenAI's presence and frequency penalties on the next token's logits: each token already generated (in
    `generated`, the answer's ids so far) loses `presence_penalty` once and `frequency_penalty` per time it came."""
    import torch

    counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
    return scores - counts * sampling.frequency_penalty - (counts > 0).to(scores.dtype) * sampling.presence_penalty


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    prompt: list[int]  # the rendered prompt's token ids
    sampling: Sampling
    adapter: str | None = None  # the LoRA adapter's name in the model (None: the base itself)
    stop: threading.Event = field(default_factory=threading.Event)  # set: the answer ends at the next step


@dataclass(frozen=True, slots=True)
class Delta:
    """What one decode step added to an answer: its text (possibly empty while a character is incomplete), the
    token, and that token's log probability under the model (before penalties and temperature)."""

    text: str
    token: int
    logprob: float


class TokenStream(Protocol):
    def __iter__(self) -> Iterator[Delta]: ...
    def cancel(self) -> None: ...


class Engine(Protocol):
    """What the chat route needs of a generation engine."""

    def submit(self, request: GenerationRequest) -> TokenStream: ...


_END = object()  # the last item of a stream's queue


class _Stream:
    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.items: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[Delta]:
        try:
            while (item := self.items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()  # a reader that stops reading frees the row at the next step

    def cancel(self) -> None:
        self.request.stop.set()


class _Row:
    """One answer in the batch."""

    def __init__(self, stream: _Stream, eos: int | None, device: Any) -> None:
        import torch

        self.stream, self.request = stream, stream.request
        self.sampling, self.eos = stream.request.sampling, eos
        self.generated: list[int] = []
        self.cached = 0  # real (not padding) tokens in the cache
        self.generator: Any = None
        if self.sampling.seed is not None and not self.sampling.greedy:
            self.generator = torch.Generator(device=device).manual_seed(self.sampling.seed)
        self._prefix, self._read = 0, 0  # incremental detokenisation (as text-generation-inference does it)

    @property
    def plain(self) -> bool:
        """Greedy without penalties: its token is the batch's argmax (chosen for all such rows at once)."""
        penalties = self.generated and (self.sampling.presence_penalty or self.sampling.frequency_penalty)
        return self.sampling.greedy and not penalties

    @property
    def eos_blocked(self) -> bool:
        return self.eos is not None and len(self.generated) < self.sampling.min_tokens

    def sample(self, scores: Any) -> int:
        """The next token from this row's scores ([1, vocabulary]): penalties, temperature, top_p, its generator."""
        import torch

        if self.generated and (self.sampling.presence_penalty or self.sampling.frequency_penalty):
            scores = penalized(scores, torch.tensor([self.generated], device=scores.device), self.sampling)
        if self.sampling.greedy:
            return int(scores.argmax(dim=-1))
        scores = _top_p(scores / self.sampling.temperature, self.sampling.top_p)
        return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator))

    def add(self, tokenizer: Any, token: int) -> str:
        """`token` added to the answer; the text it completes (empty while it ends inside a multi-byte character)."""
        self.generated.append(token)
        before: str = tokenizer.decode(self.generated[self._prefix : self._read], skip_special_tokens=True)
        now: str = tokenizer.decode(self.generated[self._prefix :], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.generated)
            return now[len(before) :]
        return ""

    def finished(self, token: int) -> bool:
        produced = len(self.generated)
        return produced >= self.sampling.max_tokens or (token == self.eos and produced >= self.sampling.min_tokens)


def _top_p(scores: Any, top_p: float) -> Any:
    """transformers' TopPLogitsWarper: keep the most likely tokens whose probabilities add up to `top_p`."""
    import torch

    if top_p >= 1.0:
        return scores
    ordered, indices = torch.sort(scores, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = False  # at least one token
    return scores.masked_fill(remove.scatter(1, indices, remove), -float("inf"))


class BatchEngine:
    """Continuous batching over one model (a base, or a PeftModel holding several adapters of it). `model` is read
    at every step (the adapter cache wraps the base in a PeftModel when its first adapter loads); `paused()`
    holds the steps off while the model's adapters change."""

    def __init__(self, model: Callable[[], Any], tokenizer: Any, *, max_batch: int = MAX_BATCH) -> None:
        self._model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self._pending: list[_Stream] = []
        self._plain_cache: bool | None = None  # see _mergeable
        self._admitting: list[_Stream] = []  # taken from _pending for the next step, not yet rows
        self._rows: list[_Row] = []
        self._cache: Any = None  # the batch's DynamicCache, rows left-padded to one length
        self._mask: Any = None  # [rows, length]: 1 where a row has a real token
        self._lock = threading.Lock()  # guards the lists of streams and rows, and the thread
        self._thread: threading.Thread | None = None
        self._stepping = threading.RLock()  # held for each step, and while adapters change (re-entered by them)
        self.steps = 0  # decode steps run (for tests and the bench: how many answers shared them)
        self.widest = 0  # the most rows one decode step carried
        self.submitted = 0  # requests ever submitted

    def submit(self, request: GenerationRequest) -> _Stream:
        stream = _Stream(request)
        with self._lock:
            self.submitted += 1
            self._pending.append(stream)
            if self._thread is None:  # started on demand, ends when idle: a model dropped from memory leaves nothing
                self._thread = threading.Thread(target=self._run, name="ftcli-generation", daemon=True)
                self._thread.start()
        return stream

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._stepping:
            yield

    @property
    def in_use(self) -> set[str]:
        """The adapters of the answers in flight or waiting."""
        with self._lock:
            streams = self._pending + self._admitting
            rows = [row.request for row in self._rows] + [stream.request for stream in streams]
        return {request.adapter for request in rows if request.adapter is not None}

    def _run(self) -> None:
        """The generation thread. Whatever stops it unexpectedly is every waiting and running answer's error, and the
        next request starts a new thread: no answer waits on a thread that is gone."""
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 (told to each answer; the engine starts again on demand)
            with self._lock:
                self._thread = None
                orphans = self._pending + [row.stream for row in self._rows]
                self._pending, self._rows, self._cache, self._mask = [], [], None, None
            for stream in orphans:
                stream.items.put(RuntimeError(f"generation stopped: {type(exc).__name__}: {exc}"))

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._rows:
                    self._thread = None
                    return
                room = self.max_batch if self._mergeable() else 1  # unmergeable: the batch it was prefilled as
                admitted = self._pending[: max(0, room - len(self._rows))]
                del self._pending[: len(admitted)]
                self._admitting = admitted
            try:
                with self._stepping:
                    self._step(admitted)
            except BaseException as exc:  # noqa: BLE001 (every answer in the batch reports it; the engine goes on)
                self._fail(admitted, exc)
            finally:
                with self._lock:
                    self._admitting = []

    def _mergeable(self) -> bool:
        """Whether the model's cache is plain (not sliding windows, not linear attention): rows of it can be
        padded, stacked and dropped. Other models answer one request at a time."""
        if self._plain_cache is None:
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            try:
                layers = DynamicCache(config=self._model().config).layers
            except Exception:  # noqa: BLE001 (a config transformers' cache can't read: answered one at a time)
                self._plain_cache = False
            else:
                self._plain_cache = all(type(layer) is DynamicLayer for layer in layers)
        return self._plain_cache

    def _fail(self, admitted: list[_Stream], exc: BaseException) -> None:
        with self._lock:
            failed = [row.stream for row in self._rows] + admitted
            self._rows, self._cache, self._mask = [], None, None
        for stream in {id(s): s for s in failed}.values():
            stream.items.put(_error_for_one(exc))

    def _step(self, admitted: list[_Stream]) -> None:
        import torch

        with torch.inference_mode():
            fresh = []
            for stream in admitted:
                if stream.request.stop.is_set():
                    stream.items.put(_END)
                else:
                    fresh.append(stream)
            for group in _prefill_groups(fresh):
                try:
                    cache, mask, rows, logits = self._prefill(group)
                    self._emit(rows, logits)  # their first tokens, before they join the batch
                except Exception as exc:  # noqa: BLE001 (these prompts' error alone: the rows running go on)
                    for stream in group:
                        stream.items.put(_error_for_one(exc))
                    continue
                self._merge(cache, mask, rows)
            self._drop_abandoned()
            if self._rows:
                self._decode()

    def _forward(self, model: Any, adapters: list[str | None], **inputs: Any) -> Any:
        if hasattr(model, "peft_config"):  # a PeftModel: each row with its own adapter (or none)
            inputs["adapter_names"] = [name or BASE_ADAPTER for name in adapters]
        return model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1, :]

    def _prefill(self, streams: list[_Stream]) -> tuple[Any, Any, list[_Row], Any]:
        """The prompts that arrived together, left-padded to the longest: their cache, mask, rows and the logits of
        their first token, not yet in the batch."""
        import torch
        from transformers import DynamicCache

        model = self._model()
        device = _device_of(model)
        prompts = [stream.request.prompt for stream in streams]
        longest = max(len(prompt) for prompt in prompts)
        padding = [longest - len(prompt) for prompt in prompts]
        pad_id = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad_id] * n + prompt for n, prompt in zip(padding, prompts, strict=True)], device=device)
        mask = torch.tensor([[0] * n + [1] * len(p) for n, p in zip(padding, prompts, strict=True)], device=device)
        cache = DynamicCache(config=model.config)
        inputs: dict[str, Any] = {"input_ids": ids, "cache": cache}
        if any(padding):
            inputs.update(attention_mask=mask, position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0))
        logits = self._forward(model, [stream.request.adapter for stream in streams], **inputs)
        rows = [_Row(stream, self.tokenizer.eos_token_id, device) for stream in streams]
        for row, prompt in zip(rows, prompts, strict=True):
            row.cached = len(prompt)
        return cache, mask, rows, logits

    def _merge(self, cache: Any, mask: Any, rows: list[_Row]) -> None:
        """New rows into the batch: both caches left-padded to the longer one, then stacked."""
        import torch
        from torch.nn.functional import pad

        with self._lock:
            if self._cache is None:
                self._cache, self._mask, self._rows = cache, mask, rows
                return
        length = max(self._mask.shape[1], mask.shape[1])
        grow_batch, grow_new = length - self._mask.shape[1], length - mask.shape[1]
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, (0, 0, grow_batch, 0)), pad(theirs.keys, (0, 0, grow_new, 0))])
            mine.values = torch.cat([pad(mine.values, (0, 0, grow_batch, 0)), pad(theirs.values, (0, 0, grow_new, 0))])
        self._mask = torch.cat([pad(self._mask, (grow_batch, 0)), pad(mask, (grow_new, 0))])
        with self._lock:
            self._rows.extend(rows)

    def _decode(self) -> None:
        import torch

        model = self._model()
        device = _device_of(model)
        rows = list(self._rows)
        self._mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long, device=device)], dim=1)
        logits = self._forward(
            model,
            [row.request.adapter for row in rows],
            input_ids=torch.tensor([[row.generated[-1]] for row in rows], device=device),
            attention_mask=self._mask,
            position_ids=torch.tensor([[row.cached] for row in rows], device=device),
            cache=self._cache,
        )
        self.steps += 1
        self.widest = max(self.widest, len(rows))
        for row in rows:
            row.cached += 1
        self._emit(rows, logits)

    def _emit(self, rows: list[_Row], logits: Any) -> None:
        """Each row's next token from its logits ([rows, vocabulary]), in as few tensor operations as the rows'
        sampling allows (each one costs, on a busy CPU), then sent to its reader."""
        import torch

        logprobs = torch.log_softmax(logits.float(), dim=-1)  # under the model, before anything a request changes
        scores = logits.float().clone()
        blocked = [index for index, row in enumerate(rows) if row.eos_blocked]
        if blocked:
            scores[blocked, self.tokenizer.eos_token_id] = -float("inf")
        tokens: list[int] = scores.argmax(dim=-1).tolist()
        for index, row in enumerate(rows):
            if not row.plain:
                tokens[index] = row.sample(scores[index : index + 1])
        chosen = logprobs.gather(1, torch.tensor(tokens, device=logprobs.device).unsqueeze(1)).squeeze(1).tolist()
        for row, token, logprob in zip(rows, tokens, chosen, strict=True):
            row.stream.items.put(Delta(row.add(self.tokenizer, token), token, logprob))
            if row.finished(token):
                row.request.stop.set()  # leaves the batch below, before the next step

    def _drop_abandoned(self) -> None:
        """Rows whose answer ended or whose client left leave the batch; padding no row needs any more goes."""
        import torch

        kept = [index for index, row in enumerate(self._rows) if not row.request.stop.is_set()]
        if len(kept) == len(self._rows):
            return
        ended = [row for index, row in enumerate(self._rows) if index not in kept]
        if kept:
            indices = torch.tensor(kept, device=self._mask.device)
            mask = self._mask[indices]
            unused = int(mask.sum(dim=0).nonzero()[0])  # leading columns that are padding in every row left
            self._mask = mask[:, unused:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[indices, :, unused:]
                layer.values = layer.values[indices, :, unused:]
        with self._lock:
            self._rows = [self._rows[index] for index in kept]
            if not kept:
                self._cache, self._mask = None, None
        for row in ended:  # after the rows changed: whoever reads the end sees its adapter no longer in use
            row.stream.items.put(_END)


PREFILL_TOKENS = 4096  # padded prompt tokens computed in one forward: new arrivals past it wait for the next step


def _prefill_groups(streams: list[_Stream]) -> list[list[_Stream]]:
    """The new arrivals in groups of at most PREFILL_TOKENS padded tokens (a long prompt alone)."""
    groups: list[list[_Stream]] = []
    for stream in streams:
        group = groups[-1] if groups else []
        longest = max([len(stream.request.prompt)] + [len(other.request.prompt) for other in group])
        if group and longest * (len(group) + 1) <= PREFILL_TOKENS:
            group.append(stream)
        else:
            groups.append([stream])
    return groups


def _error_for_one(exc: BaseException) -> BaseException:
    """An error of its own for each answer that fails: their readers raise it in threads of their own, and raising
    one exception object in several threads at once tangles its traceback."""
    try:
        own = copy.copy(exc)
    except Exception:  # noqa: BLE001 (an exception type copy can't rebuild: its words are kept)
        own = RuntimeError(f"{type(exc).__name__}: {exc}")
    own.__cause__ = exc  # its traceback, for whoever logs it
    return own


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device
