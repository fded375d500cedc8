"""Offline tiktoken encodings built from the BPE files shipped inside the package, and fast exact counters.

`tiktoken.get_encoding` downloads its rank files on first use, which fails offline, and
`tiktoken.encoding_for_model` maps `ft:` model names wrongly. We ship the files (gzip), verify their
sha256 on load, and take the pattern string and special tokens from tiktoken's own definitions so that
counts are identical to tiktoken's.

Counting (what `check` does millions of times) can use GitHub's `bpe-openai` instead: the same vocabulary and
pre-tokenization as tiktoken, but a linear-time BPE that counts without building token lists (3× tiktoken's speed
on CJK text, whose long letter runs make tiktoken's merge loop quadratic). It is used only when the pinned wheel is
installed and the vocabulary it ships hashes to OpenAI's; tests compare its counts with tiktoken's on every
shared data set and on generated text. `engine="tiktoken"` keeps to the reference.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from ftcli.data.errors import DataError, TokenizerIntegrityError

if TYPE_CHECKING:
    import tiktoken

# sha256 of the *decompressed* files: the same `expected_hash` tiktoken pins in tiktoken_ext/openai_public.py.
ENCODING_SHA256: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_build_lock = threading.Lock()

CountingEngine = Literal["auto", "bpe-openai", "tiktoken"]
COUNTING_ENGINES: tuple[CountingEngine, ...] = ("auto", "bpe-openai", "tiktoken")


def load_ranks(name: str) -> dict[bytes, int]:
    """Read and verify the shipped BPE ranks for encoding `name`."""
    if name not in ENCODING_SHA256:
        raise DataError(f"unknown encoding {name!r}", hint=f"known: {', '.join(sorted(ENCODING_SHA256))}")
    blob = resources.files("ftcli.data").joinpath("tokenizers", f"{name}.tiktoken.gz").read_bytes()
    raw = gzip.decompress(blob)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ENCODING_SHA256[name]:
        raise TokenizerIntegrityError(
            f"tokenizer file {name}.tiktoken.gz is damaged (sha256 {digest[:12]}…)",
            hint="reinstall ftcli",
        )
    decode = binascii.a2b_base64
    pairs = (line.split(b" ") for line in raw.splitlines() if line)
    return {decode(token): int(rank) for token, rank in pairs}


@dataclass(frozen=True, slots=True)
class CountingEncoding:
    """Just what counting needs: a count function, without the Python copy of the 200k ranks.

    `tiktoken.Encoding` keeps the ranks dict (~40 MB for o200k) only to be picklable; `check` never pickles it,
    so the linter builds this instead and stays small.
    """

    name: str
    count: Callable[[str], int]  # tokens of a text, encoded as ordinary text (special tokens not recognised)
    special_tokens_set: frozenset[str]
    engine: str  # "bpe-openai" or "tiktoken": what counted, for the report


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """A real `tiktoken.Encoding` for `name`, built offline (cached per process)."""
    import tiktoken

    return tiktoken.Encoding(**_spec(name, load_ranks(name)))


@cache
def get_counting_encoding(name: str, engine: CountingEngine = "auto") -> CountingEncoding:
    """Exact token counts for encoding `name`: bpe-openai when available ("auto"), else tiktoken's Rust core.

    Cached per process; `check` of a large file clears the cache (tens of MB) once its workers are done, before
    the dataset-level rules run.
    """
    if engine not in COUNTING_ENGINES:
        raise DataError(f"unknown token counter {engine!r}", hint=f"use one of: {', '.join(COUNTING_ENGINES)}")
    special = frozenset(_spec(name, {})["special_tokens"])
    if engine != "tiktoken":
        count = _bpe_openai_counter(name)
        if count is not None:
            return CountingEncoding(name, _surrogate_tolerant(count), special, "bpe-openai")
        if engine == "bpe-openai":
            raise DataError(
                f"the bpe-openai counter is not available for {name}",
                hint=f"pip install bpe-openai=={BPE_OPENAI_VERSION}, or use the tiktoken counter",
            )
    from tiktoken import _tiktoken  # type: ignore[attr-defined]  # the Rust core tiktoken.Encoding wraps

    spec = _spec(name, load_ranks(name))
    encode = _tiktoken.CoreBPE(spec["mergeable_ranks"], spec["special_tokens"], spec["pat_str"]).encode_ordinary
    return CountingEncoding(name, _surrogate_tolerant(lambda text: len(encode(text))), special, "tiktoken")


BPE_OPENAI_VERSION = "0.1.4"  # pinned in pyproject: the counter below loads its compiled module directly


def _bpe_openai_counter(name: str) -> Callable[[str], int] | None:
    """GitHub's bpe-openai counter for `name`, or None when the wheel is missing, different, or its vocabulary
    is not OpenAI's.

    The wheel's package `__init__` parses every vocabulary it ships in Python (over a second); the compiled
    module alone loads in milliseconds, so it is loaded by path.
    """
    import importlib.util
    import sys

    try:
        spec = importlib.util.find_spec("bpe_openai")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not _shipped_vocabulary_is_openais(folder / "data" / f"{name}.tiktoken.gz", name):
        return None
    module = sys.modules.get("bpe_openai._bindings") or _load_extension(folder)
    if module is None:
        return None
    try:
        if name not in module.supported_encodings():
            return None
        count: Callable[[str], int] = module.tokenizer_for_encoding(name).count
        count("warm up")  # deserialises the vocabulary now: forked workers then share it
    except (AttributeError, ValueError, RuntimeError):
        return None
    return count


@cache
def _load_extension(folder: Path) -> ModuleType | None:
    """The compiled module of the bpe-openai wheel in `folder`, loaded once per process."""
    import importlib.machinery
    import importlib.util

    binary = next(
        (p for suffix in importlib.machinery.EXTENSION_SUFFIXES for p in folder.glob(f"_bindings{suffix}")), None
    )
    if binary is None:
        return None
    loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(binary))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    if spec is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except ImportError:
        return None
    return module


def _shipped_vocabulary_is_openais(path: Path, name: str) -> bool:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return name in ENCODING_SHA256 and hashlib.sha256(raw).hexdigest() == ENCODING_SHA256[name]


def _surrogate_tolerant(count: Callable[[str], int]) -> Callable[[str], int]:
    """JSON escapes can make lone surrogates (\\ud800), which UTF-8 can't encode; tiktoken's `Encoding.encode`
    replaces them with U+FFFD, and so does this (the lint reports them: FT007)."""

    def counted(text: str) -> int:
        try:
            return count(text)
        except UnicodeEncodeError:
            return count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    return counted


def _spec(name: str, ranks: dict[bytes, int]) -> dict[str, Any]:
    """tiktoken's own constructor arguments for `name`, with our verified ranks (empty: pattern and specials)."""
    from tiktoken_ext import openai_public

    if name not in ENCODING_SHA256:
        raise DataError(f"unknown encoding {name!r}", hint=f"known: {', '.join(sorted(ENCODING_SHA256))}")
    constructor = getattr(openai_public, name)
    # tiktoken's constructor calls load_tiktoken_bpe (a download); hand it our verified ranks instead, so the
    # pattern string and special tokens stay tiktoken's own.
    with _build_lock:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda *_args, **_kwargs: ranks
        try:
            spec = constructor()
        finally:
            openai_public.load_tiktoken_bpe = original
    return dict(spec)
