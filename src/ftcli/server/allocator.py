"""Keeping a training process's memory flat from step to step (issue 30): freed memory given back to the system where
the C library is glibc, and the per-shape caches of matrix-multiply kernels bounded.

oneDNN (PyTorch's CPU kernels for bf16) keeps a compiled primitive per matrix shape it has seen, and ideep a cache of
its own beside it, up to 1024 each: packed batches have a new token count at almost every pass, so both grew by
~40 MB a step on SmolLM2-135M (500 MB by step 12) with entries never used again. Without oneDNN's cache a step took
four times as long (every layer of a pass compiles again what the one before it did); 64 entries keep what one pass
reuses at the same speed (measured). ideep's cache holds primitive descriptors, 0.26 MB each for a bf16 matrix
multiply whatever its shape (oneDNN's brgemm descriptor). A descriptor missed there is made again without compiling
anything, since oneDNN's cache still holds its primitive: with 4 entries SmolLM2-135M trains as fast as with 64 and
holds 30–40 MB less (measured on it and on the toy base). They read these variables when first used, so they are set
before the first multiply; a user's own setting of either is kept.

A step's activations are hundreds of buffers of a few MB each, freed at the end of its backward pass. glibc serves
blocks over a threshold with a mapping of their own, returned to the system when freed; but the threshold grows to
the size of each such block freed (up to 32 MB), so from the second step on, activations come from the heap, whose
freed pieces stay in the process: measured on SmolLM2-135M, a step left 450 MB held that `malloc_trim` gave back, and
the next step's activations came on top of it. A fixed 1 MB threshold keeps activations in their own mappings, and a
trim after each step returns what smaller blocks left behind. The cost is the kernel zeroing fresh pages for each
step's activations: a few percent of a CPU step.

Process-wide, so it is set by the process that trains (the job's worker, a benchmark's child), at most once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache

_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
OWN_MAPPING_BYTES = 1 << 20  # blocks from this size get a mapping of their own


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (musl has mallopt but not this, nor malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


KERNEL_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64", "LRU_CACHE_CAPACITY": "4"}


@cache
def release_freed_memory() -> bool:
    """Kernel caches bounded, and glibc's thresholds fixed so freed activations go back to the system; False
    where the C library isn't glibc."""
    for name, value in KERNEL_CACHES.items():
        os.environ.setdefault(name, value)
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, OWN_MAPPING_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, OWN_MAPPING_BYTES)
    )


def trim() -> None:
    """Return the heap's free pages to the system (after a step, when its activations are gone)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
