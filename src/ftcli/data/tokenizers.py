"""Offline tiktoken encodings built from the BPE files shipped inside the package.

`tiktoken.get_encoding` downloads its rank files on first use, which fails offline, and
`tiktoken.encoding_for_model` maps `ft:` model names wrongly. We ship the files (gzip), verify their
sha256 on load, and take the pattern string and special tokens from tiktoken's own definitions so that
counts are identical to tiktoken's.
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
from typing import TYPE_CHECKING, Any

from ftcli.data.errors import DataError, TokenizerIntegrityError

if TYPE_CHECKING:
    import tiktoken

# sha256 of the *decompressed* files: the same `expected_hash` tiktoken pins in tiktoken_ext/openai_public.py.
ENCODING_SHA256: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_build_lock = threading.Lock()


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
    """Just what counting needs: tiktoken's Rust encoder, without the Python copy of the 200k ranks.

    `tiktoken.Encoding` keeps the ranks dict (~40 MB for o200k) only to be picklable; `check` never pickles it,
    so the linter builds this instead and stays small.
    """

    name: str
    encode_ordinary: Callable[[str], list[int]]
    special_tokens_set: frozenset[str]


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """A real `tiktoken.Encoding` for `name`, built offline (cached per process)."""
    import tiktoken

    return tiktoken.Encoding(**_spec(name))


@cache
def get_counting_encoding(name: str) -> CountingEncoding:
    """The encoder of `get_encoding(name)` alone; counts are identical. Cached per process; `check` of a large
    file clears the cache (~40 MB) once its workers are done, before the dataset-level rules run."""
    from tiktoken import _tiktoken  # type: ignore[attr-defined]  # the Rust core tiktoken.Encoding wraps

    spec = _spec(name)
    core = _tiktoken.CoreBPE(spec["mergeable_ranks"], spec["special_tokens"], spec["pat_str"])
    return CountingEncoding(name, core.encode_ordinary, frozenset(spec["special_tokens"]))


def _spec(name: str) -> dict[str, Any]:
    """tiktoken's own constructor arguments for `name`, with our verified ranks."""
    from tiktoken_ext import openai_public

    ranks = load_ranks(name)
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
