"""`ftcli models export`: a fine-tuned model's files brought to a folder of the user's (from `ftcli serve`, which
builds them: server/exports.py). Each file is streamed and checked against the sha256 the server listed; the folder
appears only when complete (a temp folder beside it, renamed), and an existing one is replaced only when asked."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ftcli.service.errors import BackendError, NotFound, UsageError, translate

if TYPE_CHECKING:
    from openai import OpenAI

ExportFormat = Literal["adapter", "merged"]


@dataclass(frozen=True, slots=True)
class ModelExport:
    model: str
    format: ExportFormat
    folder: str
    files: list[dict[str, Any]]
    serve: list[str]  # commands that serve the result (vLLM, Ollama, transformers)


def export_model(
    client: OpenAI,
    model: str,
    out: Path,
    *,
    fmt: ExportFormat = "adapter",
    force: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ModelExport:
    import openai

    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="pass --force to replace it")
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    try:
        listing: Any = client.post(f"{root}/ftcli/exports", body={"model": model, "format": fmt}, cast_to=object)
    except openai.NotFoundError as exc:
        if "model" in str(exc).lower() and "no such" in str(exc).lower():
            raise NotFound(f"no fine-tuned model {model!r} on this backend") from None
        raise UsageError(
            "this backend doesn't hand out model weights (OpenAI keeps them)",
            hint="export from `ftcli serve`, where the model was trained; `ftcli export` brings jobs and data out",
        ) from None
    except openai.OpenAIError as exc:
        raise translate(exc) from None
    temp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    temp.mkdir(parents=True)
    try:
        for entry in listing["files"]:
            _download(client, f"{root}/ftcli/exports/{listing['id']}", entry, temp, on_progress)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        temp.rename(out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return ModelExport(model, fmt, str(out), list(listing["files"]), serve_commands(model, fmt, out))


def _download(
    client: OpenAI, url: str, entry: dict[str, Any], folder: Path, on_progress: Callable[[int], None] | None
) -> None:
    import httpx2
    import openai

    name = str(entry["name"])
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise BackendError(f"the backend named an export file {name!r}: refused")  # never a path out of the folder
    digest = hashlib.sha256()
    try:
        response = client.get(
            f"{url}/{name}", cast_to=httpx2.Response, options={"headers": {"X-Stainless-Raw-Response": "stream"}}
        )
    except openai.OpenAIError as exc:
        raise translate(exc) from None
    try:
        with (folder / name).open("wb") as sink:
            for block in response.iter_bytes(1 << 20):
                digest.update(block)
                sink.write(block)
                if on_progress:
                    on_progress(len(block))
    finally:
        response.close()
    if digest.hexdigest() != entry["sha256"]:
        raise BackendError(f"{name} arrived damaged (sha256 differs from the backend's)", hint="run the export again")


def serve_commands(model: str, fmt: ExportFormat, folder: Path) -> list[str]:
    parts = model.split(":")
    base = parts[1] if model.startswith("ft:") and len(parts) > 1 else "BASE_MODEL"
    name = (parts[3] if len(parts) > 3 and parts[3] else "ftcli-model").lower()
    if fmt == "adapter":
        return [
            f"vllm serve {base} --enable-lora --lora-modules {name}={folder}",
            f"python -c 'from peft import AutoPeftModelForCausalLM as M; M.from_pretrained(\"{folder}\")'",
        ]
    return [
        f"vllm serve {folder}",
        f"ollama create {name} -f {folder / 'Modelfile'}",
        f"python -c 'from transformers import AutoModelForCausalLM as M; M.from_pretrained(\"{folder}\")'",
    ]
