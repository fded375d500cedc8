"""`ftcli models export`: a fine-tuned model's files brought to a folder of the user's (from `ftcli serve`, which
builds them: server/model_export.py; GGUF with llama.cpp's own tools, server/gguf_export.py). Each file is streamed
and checked against the sha256 the server listed; the folder appears only when complete (a temp folder beside it,
renamed), and an existing one is replaced only when asked."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Any, Literal

from ftcli.service.errors import BackendError, NotFound, UsageError, _detail, translated

if TYPE_CHECKING:
    from openai import OpenAI

    from ftcli.service.files import ProgressCallback

ExportFormat = Literal["adapter", "merged", "gguf", "gguf-lora"]
GgufQuant = Literal["f16", "q8_0", "q4_k_m"]
GGUF_FORMATS: tuple[ExportFormat, ...] = ("gguf", "gguf-lora")


@dataclass(frozen=True, slots=True)
class ModelExport:
    model: str
    format: ExportFormat
    folder: str
    files: list[dict[str, Any]]
    serve: list[str]  # commands that serve the result (vLLM, Ollama, transformers, llama.cpp)
    quant: GgufQuant | None = None  # a GGUF export's quantization


def export_model(
    client: OpenAI,
    model: str,
    out: Path,
    *,
    fmt: ExportFormat = "adapter",
    quant: GgufQuant | None = None,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ModelExport:
    import openai

    if quant is not None and fmt not in GGUF_FORMATS:
        raise UsageError(f"--quant is for --format gguf or gguf-lora, not {fmt}")
    if fmt == "gguf-lora" and quant == "q4_k_m":
        raise UsageError("a GGUF LoRA is written as f16 or q8_0", hint="k-quants are for the model (--format gguf)")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="pass --force to replace it")
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    body: dict[str, Any] = {"model": model, "format": fmt, **({"quant": quant} if quant else {})}
    with translated():
        try:
            listing: Any = client.post(f"{root}/ftcli/exports", body=body, cast_to=object)
        except openai.BadRequestError as exc:
            code = exc.code if isinstance(exc.code, str) else ""
            if code in ("gguf_unavailable", "gguf_unsupported"):  # the server said why, and how to get it
                raise UsageError(_detail(exc)) from None
            raise
        except openai.NotFoundError as exc:
            if "model" in str(exc).lower() and "no such" in str(exc).lower():
                raise NotFound(f"no fine-tuned model {model!r} on this backend") from None
            raise UsageError(
                "this backend doesn't hand out model weights (OpenAI keeps them)",
                hint="export from `ftcli serve`, where the model was trained; `ftcli export` brings jobs and data out",
            ) from None
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
    files = list(listing["files"])
    serve = serve_commands(model, fmt, out, listing.get("base"), files)
    return ModelExport(model, fmt, str(out), files, serve, listing.get("quant"))


def _download(
    client: OpenAI, url: str, entry: dict[str, Any], folder: Path, on_progress: ProgressCallback | None
) -> None:
    import httpx2

    name = str(entry["name"])
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise BackendError(f"the backend named an export file {name!r}: refused")  # never a path out of the folder
    digest = hashlib.sha256()
    with translated():
        response = client.get(
            f"{url}/{name}", cast_to=httpx2.Response, options={"headers": {"X-Stainless-Raw-Response": "stream"}}
        )
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


def _python_literal(path: Path) -> str:
    """A path as a Python string literal (JSON's double-quoted string is one), for a `python -c` command."""
    return json.dumps(str(path))


def serve_commands(
    model: str,
    fmt: ExportFormat,
    folder: Path,
    base: dict[str, Any] | None = None,
    files: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Commands that serve the export. An adapter needs its base: where the server's base folder is on this machine
    (ftcli/tiny, a converted GGUF, a model folder, the Hugging Face cache) they load it from there with
    HF_HUB_OFFLINE=1, so nothing is looked up on the Hub; otherwise they name the base as the job did. A merged
    export holds everything itself; so does a GGUF export (llama.cpp, Ollama); a GGUF LoRA goes on the base as GGUF."""
    parts = model.split(":")
    name = (parts[3] if len(parts) > 3 and parts[3] else "ftcli-model").lower()
    here = folder.resolve()
    offline = "HF_HUB_OFFLINE=1 "
    if fmt in GGUF_FORMATS:
        gguf = next((str(f["name"]) for f in files or [] if str(f["name"]).endswith(".gguf")), "model.gguf")
        if fmt == "gguf-lora":
            return [
                f"llama-server -m BASE.gguf --lora {quote(str(here / gguf))}",
                f"llama-cli -m BASE.gguf --lora {quote(str(here / gguf))} -cnv",
            ]
        return [
            f"ollama create {quote(name)} -f {quote(str(here / 'Modelfile'))}",
            f"llama-server -m {quote(str(here / gguf))}",
            f"llama-cli -m {quote(str(here / gguf))} -cnv",
        ]
    if fmt == "merged":
        load = f"from transformers import AutoModelForCausalLM as M; M.from_pretrained({_python_literal(here)})"
        return [
            f"{offline}vllm serve {quote(str(here))}",
            f"ollama create {quote(name)} -f {quote(str(here / 'Modelfile'))}",
            f"{offline}python -c {quote(load)}",
        ]
    base_folder = Path(str(base["folder"])) if base and base.get("folder") else None
    if base_folder is not None and (base_folder / "config.json").is_file():
        load = (
            "from transformers import AutoModelForCausalLM as M; from peft import PeftModel as P; "
            f"P.from_pretrained(M.from_pretrained({_python_literal(base_folder)}), {_python_literal(here)})"
        )
        return [
            f"{offline}vllm serve {quote(str(base_folder))} --enable-lora --lora-modules {quote(f'{name}={here}')}",
            f"{offline}python -c {quote(load)}",
        ]
    named = str(base["name"]) if base and base.get("name") else parts[1] if model.startswith("ft:") else "BASE_MODEL"
    load = f"from peft import AutoPeftModelForCausalLM as M; M.from_pretrained({_python_literal(here)})"
    return [
        f"vllm serve {quote(named)} --enable-lora --lora-modules {quote(f'{name}={here}')}",
        f"python -c {quote(load)}",
    ]
