"""A fine-tuned model as files that leave ftcli (`ftcli models export`, fetched by service/model_export.py): the PEFT
adapter (for `vllm serve --enable-lora`, PeftModel), the base with the adapter merged (sharded safetensors in the
base's dtype, for transformers, vLLM and Ollama), or GGUF files made by llama.cpp's own tools (server/gguf_export.py:
the merged model for llama.cpp, Ollama and LM Studio, or the adapter alone for llama.cpp's `--lora`), each with what
runs it (tokenizer and chat template, an Ollama Modelfile) and a model card. Built once per model, format and
quantization under the data dir (a temp folder renamed into place), listed with sha256 for the client to verify."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.data.local_bases import canonical_name
from ftcli.server.bases import resolve_base
from ftcli.server.file_lock import exclusive
from ftcli.server.protocol.exports import ExportFormat, GgufQuant
from ftcli.server.store import Store

GGUF_FORMATS = ("gguf", "gguf-lora")
MANIFEST = "ftcli-export.json"
SHARD_SIZE = "2GB"


class UnknownModel(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class Exported:
    id: str
    folder: Path
    files: list[dict[str, Any]]  # name, bytes, sha256
    # the base an adapter needs: its name and the folder this server loads it from, for commands that work offline
    # on this machine (None for an export built before ftcli recorded it)
    base: dict[str, str] | None = None
    quant: GgufQuant | None = None  # a GGUF export's quantization


def export_model(store: Store, model_id: str, fmt: ExportFormat, quant: GgufQuant | None = None) -> Exported:
    """Build (once) and list an export. A GGUF format takes a quantization (f16 when None); the others none.
    Raises UnknownModel, and for GGUF gguf_export's GgufUnavailable / GgufRefused / GgufFailed."""
    row = store.model(model_id)
    if row is None:
        raise UnknownModel(model_id)
    if fmt in GGUF_FORMATS:
        quant = quant or "f16"
    elif quant is not None:
        raise ValueError(f"a quantization is for the GGUF formats, not {fmt}")
    adapter = Path(row["adapter"])
    variant = f"{fmt}:{quant}" if quant else fmt
    export_id = hashlib.sha256(f"{model_id}|{variant}|{adapter.stat().st_mtime_ns}".encode()).hexdigest()[:24]
    folder = store.data_dir / "exports" / export_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    # one build of an export at a time (two requests for it at once: the second waits and finds it built)
    with exclusive(folder.with_name(folder.name + ".lock")):
        if not (folder / MANIFEST).exists():
            _build_export(store, row, folder, fmt, quant, model_id, adapter)
    manifest = json.loads((folder / MANIFEST).read_text())
    return Exported(export_id, folder, manifest["files"], manifest.get("base"), manifest.get("quant"))


def _build_export(
    store: Store,
    row: sqlite3.Row,
    folder: Path,
    fmt: ExportFormat,
    quant: GgufQuant | None,
    model_id: str,
    adapter: Path,
) -> None:
    """The export's files and manifest, built in a folder beside it and moved into place whole."""
    temp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        base = resolve_base(row["base"], store.data_dir)
        job = store.job(row["job_id"]) or {}
        made = _build(temp, fmt, base, adapter, canonical_name(row["base"]), quant, model_id)
        card = _model_card(store, model_id, row["base"], fmt, job) + made
        (temp / "README.md").write_text(card, encoding="utf-8")
        files = [
            {"name": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(temp.iterdir())
        ]
        manifest = {
            "model": model_id,
            "format": fmt,
            "quant": quant,
            "files": files,
            "base": {"name": canonical_name(row["base"]), "folder": str(base)},
        }
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)  # a refused or failed build leaves nothing under exports/
        raise
    shutil.rmtree(folder, ignore_errors=True)
    temp.rename(folder)


def export_file(store: Store, export_id: str, name: str) -> Path | None:
    """A file of a finished export, only by a name its manifest lists (no path ever comes from the request)."""
    if len(export_id) != 24 or any(c not in "0123456789abcdef" for c in export_id):
        return None
    folder = store.data_dir / "exports" / export_id
    try:
        listed = {f["name"] for f in json.loads((folder / MANIFEST).read_text())["files"]}
    except (OSError, ValueError):
        return None
    return folder / name if name in listed else None


def _build(
    out: Path, fmt: ExportFormat, base: Path, adapter: Path, base_name: str, quant: GgufQuant | None, model_id: str
) -> str:
    """Write the export's files into `out`; returns what the model card adds about how they were made."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if fmt in GGUF_FORMATS:
        assert quant is not None
        return _build_gguf(out, fmt, base, adapter, base_name, quant, model_id, tokenizer)
    if fmt == "adapter":
        for part in adapter.iterdir():
            shutil.copy2(part, out / part.name)
        config = json.loads((out / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_name  # the base's name, not a folder of this machine
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    else:
        _merge(out, base, adapter)
        (out / "Modelfile").write_text(modelfile(tokenizer), encoding="utf-8")
    tokenizer.save_pretrained(out)
    return ""


def _merge(out: Path, base: Path, adapter: Path) -> None:
    import torch
    from peft import PeftModel

    from ftcli.server.training import load_base

    model, _ = load_base(base)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    declared = json.loads((base / "config.json").read_text())
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        str(declared.get("dtype") or declared.get("torch_dtype"))
    )
    if dtype is not None:  # merged in float32, saved in the base's own dtype
        merged = merged.to(dtype)
    merged.save_pretrained(out, safe_serialization=True, max_shard_size=SHARD_SIZE)


def _build_gguf(
    out: Path,
    fmt: ExportFormat,
    base: Path,
    adapter: Path,
    base_name: str,
    quant: GgufQuant,
    model_id: str,
    tokenizer: Any,
) -> str:
    from ftcli.server import gguf_export

    tools = gguf_export.llama_cpp_tools()  # before any work: a server without them says so at once
    architecture = gguf_export.check_convertible(base, base_name)
    if fmt == "gguf-lora":
        target = out / f"adapter-{quant}.gguf"
        gguf_export.convert_adapter(tools, adapter, base, target, quant)
        use = f"`llama-server -m BASE.gguf --lora {target.name}` (BASE.gguf: `{base_name}` as GGUF, any quantization)"
    else:
        target = out / f"model-{quant}.gguf"
        work = out.with_name(out.name + ".merged")
        shutil.rmtree(work, ignore_errors=True)
        try:
            _merge(work, base, adapter)
            tokenizer.save_pretrained(work)
            gguf_export.convert_model(tools, work, target, quant, name=model_id)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        gguf_export.check_embedded(target, tokenizer)
        (out / "Modelfile").write_text(modelfile(tokenizer, f"./{target.name}"), encoding="utf-8")
        use = f"`llama-server -m {target.name}` or `ollama create NAME -f Modelfile`"
    script = "convert_lora_to_gguf.py" if fmt == "gguf-lora" else "convert_hf_to_gguf.py"
    made = f"its sources' `{script}` with their gguf-py {tools.gguf_py_version}"
    if fmt == "gguf" and quant != "f16":
        made += f", then llama.cpp's quantizer ({quant}, from the f16 conversion)"
    lines = [
        "",
        f"## GGUF ({fmt}, {quant})",
        "",
        f"- `{target.name}` ({architecture}): made by llama.cpp's own tools, from llama-cpp-python {tools.version}: "
        + made,
    ]
    if fmt == "gguf":
        lines.append("- the base's chat template and end-of-turn token are embedded in the file")
    lines.append(f"- run it: {use}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class OllamaTemplate:
    """A chat format as Ollama's Go template, and the tokens that end a reply."""

    marker: str  # found in the Jinja chat template of a model of this family
    template: str
    stops: tuple[str, ...]


# The families Ollama's own library writes these templates for (ChatML: Qwen, SmolLM; Llama 3; Gemma; Mistral).
OLLAMA_TEMPLATES = (
    OllamaTemplate(
        "<|im_start|>",
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
        ("<|im_start|>", "<|im_end|>"),
    ),
    OllamaTemplate(
        "<|start_header_id|>",
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    OllamaTemplate(
        "<start_of_turn>",
        "<start_of_turn>user\n{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}<end_of_turn>\n"
        "<start_of_turn>model\n{{ .Response }}<end_of_turn>\n",
        ("<start_of_turn>", "<end_of_turn>"),
    ),
    OllamaTemplate(
        "[INST]",
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]{{ .Response }}",
        ("[INST]", "[/INST]"),
    ),
)


def modelfile(tokenizer: Any, source: str = ".") -> str:
    """Ollama's recipe: the weights (this folder, or a GGUF file in it), the chat format of the base's family, and its
    stop tokens. For a family not listed, `ollama create` reads the chat template from tokenizer_config.json (a
    folder) or the GGUF's own tokenizer.chat_template itself."""
    lines = [f"FROM {source}"]
    jinja = str(getattr(tokenizer, "chat_template", "") or "")
    family = next((t for t in OLLAMA_TEMPLATES if t.marker in jinja), None)
    stops = list(family.stops) if family else []
    if family is not None:
        lines.append(f'TEMPLATE """{family.template}"""')
    else:
        where = "the GGUF file" if source.endswith(".gguf") else "tokenizer_config.json in this folder"
        lines.append(f"# Ollama reads the chat template from {where}")
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    return "\n".join(lines) + "\n"


def _model_card(store: Store, model_id: str, base: str, fmt: ExportFormat, job: dict[str, Any]) -> str:
    training = store.file(job["training_file"]) if job.get("training_file") else None
    metrics = [e["data"] for e in store.events(job.get("id", "")) if e["type"] == "metrics"] if job else []
    hyper = (job.get("method") or {}).get(job.get("method", {}).get("type", ""), {}).get("hyperparameters", {})
    lines = [
        f"# {model_id}",
        "",
        f"Fine-tuned with ftcli's local backend from `{canonical_name(base)}` ({fmt} export).",
        "",
        f"- job: `{job.get('id', 'unknown')}`, trained tokens: {job.get('trained_tokens')}",
        f"- training data sha256: `{training['sha256'] if training else 'unknown'}`",
        f"- final training loss: {metrics[0].get('train_loss') if metrics else 'unknown'}",
        f"- hyperparameters: `{json.dumps(hyper, sort_keys=True)}`",
    ]
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
