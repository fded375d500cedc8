"""The one way ftcli writes a file: to a temporary file beside the target, fsynced, then renamed over it, so a crash
never leaves a half-written file (outputs, ledgers, profiles, manifests, the server's runtime file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_atomic(output: Path, data: bytes | Iterable[bytes], *, private: bool = False) -> int:
    """Write `data` (bytes, or blocks of bytes) to `output`; returns the bytes written. `private`: readable by the
    owner only (0600) from the first byte (keys, ledgers); otherwise the usual 0644 less the umask."""
    blocks = (data,) if isinstance(data, bytes) else data
    handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)  # 0600
    written = 0
    try:
        with os.fdopen(handle, "wb") as stream:
            for block in blocks:
                stream.write(block)
                written += len(block)
            stream.flush()
            os.fsync(stream.fileno())
        if not private:
            os.chmod(temp_name, 0o644 & ~_umask())
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
