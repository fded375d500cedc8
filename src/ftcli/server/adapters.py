"""The fine-tunes of one base served from one copy of its weights: their LoRA adapters loaded side by side into one
PeftModel (each under a name of its own), loaded on first use and evicted least-recently-used once they take more
memory than `serve --adapter-cache-mb`. An adapter an answer in flight uses is never evicted (the cache may then
stay over its cap until that answer ends), nor the one just loaded.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.server.batching import BatchEngine, GenerationRequest, TokenStream

MIB = 1024 * 1024
DEFAULT_ADAPTER_CACHE_MB = 1024  # SmolLM2-135M's adapters take ~10 MB each, a 7B model's rank-16 ones ~160 MB


@dataclass(slots=True)
class _Adapter:
    name: str  # its name inside the PeftModel
    size: int  # bytes of its weights in memory


class AdapterCache:
    """One base in memory, its adapters and the engine that batches their answers."""

    def __init__(self, base: Any, tokenizer: Any, *, limit_bytes: int = DEFAULT_ADAPTER_CACHE_MB * MIB) -> None:
        self.model = base  # the base; the PeftModel wrapping it once an adapter is loaded
        self.limit_bytes = limit_bytes
        self.engine = BatchEngine(lambda: self.model, tokenizer)
        self._loaded: OrderedDict[str, _Adapter] = OrderedDict()  # by adapter folder, least recently used first
        self._orphans: list[str] = []  # names of forgotten adapters still in the model (evicted first)
        self._lock = threading.Lock()
        self._count = 0

    @property
    def loaded(self) -> list[Path]:
        """The adapter folders in memory, least recently used first."""
        with self._lock:
            return [Path(path) for path in self._loaded]

    @property
    def size(self) -> int:
        with self._lock:
            return sum(adapter.size for adapter in self._loaded.values())

    def activate(self, adapter: Path) -> str:
        """The adapter's name in the model, loaded if it isn't, and made the model's active adapter (for callers
        of the model itself; the engine names each row's adapter)."""
        with self._lock:
            name = self._name_of(adapter)
            if self.model.active_adapter != name:
                with self.engine.paused():
                    self.model.set_adapter(name)
            return name

    def submit(self, adapter: Path | None, make: Callable[[str | None], GenerationRequest]) -> TokenStream:
        """The request `make` builds for the adapter's name, submitted while that name can't be evicted."""
        with self._lock:
            return self.engine.submit(make(self._name_of(adapter) if adapter is not None else None))

    def forget(self, adapter: Path) -> None:
        """The adapter's files are gone (its model was deleted): the next request for it loads it again, and its
        weights leave memory as soon as nothing uses them."""
        with self._lock:
            dropped = self._loaded.pop(str(adapter), None)
            if dropped is not None:
                self._orphans.append(dropped.name)
                self._evict(keep=None)

    def _name_of(self, adapter: Path) -> str:
        key = str(adapter)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key].name
        self._count += 1
        name = f"adapter{self._count}"
        with self.engine.paused():
            try:
                self._load(adapter, name)
            except Exception:
                if name in getattr(self.model, "peft_config", {}) and len(self.model.peft_config) > 1:
                    self.model.delete_adapter(name)  # half loaded: not left in memory, unreachable
                raise
        self._loaded[key] = _Adapter(name, self._bytes_of(name))
        self._evict(keep=name)
        return name

    def _load(self, adapter: Path, name: str) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(adapter), adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
        self.model.eval()

    def _bytes_of(self, name: str) -> int:
        marker = f".{name}."
        return sum(p.numel() * p.element_size() for n, p in self.model.named_parameters() if marker in n)

    def _evict(self, keep: str | None) -> None:
        """Forgotten adapters, then the least recently used, while over the cap; never one in use or `keep`, and
        never the model's last adapter (PEFT can't hold none)."""
        busy = self.engine.in_use | ({keep} if keep else set())
        for name in [name for name in self._orphans if name not in busy]:
            if self._delete(name):
                self._orphans.remove(name)
        total = sum(adapter.size for adapter in self._loaded.values())
        for key, adapter in list(self._loaded.items()):
            if total <= self.limit_bytes:
                break
            if adapter.name not in busy and self._delete(adapter.name):
                del self._loaded[key]
                total -= adapter.size

    def _delete(self, name: str) -> bool:
        if len(self.model.peft_config) <= 1:
            return False
        with self.engine.paused(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the active adapter was deleted": the engine names its own
            self.model.delete_adapter(name)
        return True
