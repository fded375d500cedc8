"""GGUF files of a fine-tuned model, made by llama.cpp's own tools (`ftcli models export --format gguf|gguf-lora`).

No wheel ships llama.cpp's converters (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`); the llama-cpp-python
source distribution on PyPI carries llama.cpp's sources, the converters and their own `gguf-py` included, at the very
commit whose library llama-cpp-python builds. `python -m ftcli.server.gguf_export install` fetches that sdist with
pip (for the llama-cpp-python installed) and unpacks the converters and `gguf-py` into the environment's data folder
(`<prefix>/share/ftcli/llama.cpp-<version>`): the converter that writes a file and the library that loads and
quantizes it are one llama.cpp. An export then runs the converter in a subprocess (its own `gguf-py` first on its
path, offline: it reads only the folder it is given) and quantizes with llama.cpp's quantizer through
llama-cpp-python (`llama_model_quantize`). Nothing downloads at export time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.data.local_bases import TINY_NAME
from ftcli.server.protocol.exports import GgufQuant

ADAPTER_QUANTS: tuple[GgufQuant, ...] = ("f16", "q8_0")  # what convert_lora_to_gguf.py writes (no k-quants)

# The architectures (config.json's `architectures`) that ftcli trains and llama.cpp converts and runs; SmolLM is Llama.
GGUF_ARCHITECTURES = frozenset(
    {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
    }
)
CONVERTER_MEMBERS = (
    "convert_hf_to_gguf.py",
    "convert_lora_to_gguf.py",
    "conversion/",
    "gguf-py/gguf/",
    "gguf-py/pyproject.toml",  # gguf-py's version, for the model card
    "LICENSE",
)
SOURCES_ENV = "FTCLI_LLAMA_CPP_SOURCES"  # a llama.cpp source folder of the user's, instead of the unpacked one
DISTRIBUTION = "llama-cpp-python"
# A conversion reads and writes the model once (minutes for 8B on a CPU): a converter still running after this hangs
CONVERTER_TIMEOUT_SECONDS = 2 * 3600


class GgufUnavailable(ValueError):
    """llama-cpp-python or llama.cpp's converter is not installed on the server."""


class GgufRefused(ValueError):
    """This model can't be a GGUF file: its architecture or tokenizer has no GGUF form in llama.cpp."""


class GgufFailed(RuntimeError):
    """llama.cpp's converter or quantizer failed (its own last words are in the message)."""


@dataclass(frozen=True, slots=True)
class LlamaCpp:
    version: str  # llama-cpp-python's
    sources: Path  # the folder with convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/ and gguf-py/

    @property
    def gguf_py_version(self) -> str:
        """The version of the converter's own `gguf-py` (its pyproject's), for the model card."""
        try:
            text = (self.sources / "gguf-py" / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            return "unknown"
        import tomllib

        return str(tomllib.loads(text).get("project", {}).get("version", "unknown"))


def install_hint() -> str:
    return (
        "install the `gguf` extra (pip install 'ftcli[gguf]': llama-cpp-python) and then llama.cpp's converter "
        "from its sources: python -m ftcli.server.gguf_export install"
    )


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_sources(version: str) -> Path:
    return Path(sys.prefix) / "share" / "ftcli" / f"llama.cpp-{version}"


def llama_cpp_tools() -> LlamaCpp:
    """llama-cpp-python and the converter of the same llama.cpp, or GgufUnavailable saying how to install them."""
    version = installed_version()
    if version is None:
        raise GgufUnavailable(f"this server has no llama-cpp-python: {install_hint()}")
    sources = Path(os.environ[SOURCES_ENV]) if os.environ.get(SOURCES_ENV) else default_sources(version)
    missing = [name for name in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py") if not (sources / name).is_file()]
    if missing:
        raise GgufUnavailable(f"llama.cpp's converter is not in {sources}: {install_hint()}")
    return LlamaCpp(version, sources)


def check_convertible(base: Path, base_name: str) -> str:
    """The base's architecture, when llama.cpp takes it; GgufRefused naming it otherwise."""
    if base_name == TINY_NAME:
        raise GgufRefused(
            f"{TINY_NAME} has no GGUF form: its byte-level tokenizer (256 byte tokens, no merges) is none of the "
            "pre-tokenizers llama.cpp knows; export a fine-tune of a real base (e.g. smollm2-135m) as GGUF, or this "
            "one as `--format merged` or `adapter`"
        )
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GgufRefused(f"the base {base_name} has no readable config.json: {exc}") from None
    architectures = config.get("architectures") or [str(config.get("model_type", "unknown"))]
    architecture = str(architectures[0])
    if architecture not in GGUF_ARCHITECTURES:
        supported = ", ".join(sorted(GGUF_ARCHITECTURES))
        raise GgufRefused(
            f"the base {base_name} is a {architecture}: ftcli exports GGUF for {supported} "
            "(export it as `--format merged` or `adapter` instead)"
        )
    return architecture


def convert_model(tools: LlamaCpp, model_dir: Path, out: Path, quant: GgufQuant, *, name: str) -> None:
    """A transformers model folder (merged weights + tokenizer + chat template) as one GGUF file named `name`
    (general.name): converted to f16 by llama.cpp's converter, then quantized by its quantizer (q8_0, q4_k_m)."""
    with tempfile.TemporaryDirectory(prefix="f16-", dir=out.parent) as work:
        f16 = out if quant == "f16" else Path(work) / "model-f16.gguf"
        arguments = [str(model_dir), "--outfile", str(f16), "--outtype", "f16", "--model-name", name]
        _run_converter(tools, "convert_hf_to_gguf.py", arguments)
        if quant != "f16":
            quantize(f16, out, quant)


def convert_adapter(tools: LlamaCpp, adapter_dir: Path, base_dir: Path, out: Path, quant: GgufQuant) -> None:
    """A PEFT LoRA adapter as a GGUF LoRA for llama.cpp's `--lora` (the base folder gives its shapes and names)."""
    if quant not in ADAPTER_QUANTS:
        raise GgufRefused(f"a GGUF LoRA is written as {' or '.join(ADAPTER_QUANTS)}, not {quant}")
    arguments = [str(adapter_dir), "--base", str(base_dir), "--outfile", str(out), "--outtype", quant]
    _run_converter(tools, "convert_lora_to_gguf.py", arguments)


def quantize(source: Path, out: Path, quant: GgufQuant) -> None:
    import llama_cpp

    ftypes = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise GgufFailed(f"llama.cpp's quantizer could not write {quant} from {source.name}")


def _run_converter(tools: LlamaCpp, script: str, arguments: list[str]) -> None:
    # Offline: the converter is given folders; the Hub is never asked (no `--remote`, no base looked up by name).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter's own gguf-py, the version it was written for
    try:
        done = subprocess.run(
            [sys.executable, str(tools.sources / script), *arguments],
            cwd=tools.sources,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=CONVERTER_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise GgufFailed(
            f"llama.cpp's {script} ran past {CONVERTER_TIMEOUT_SECONDS // 60} minutes and was stopped"
        ) from None
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = said[-1] if said else f"exit status {done.returncode}"
        raise GgufFailed(f"llama.cpp's {script} failed: {last}")


def metadata(path: Path) -> dict[str, Any]:
    """A GGUF file's key-value metadata (strings, numbers, flags; arrays left out), read with the `gguf` package."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path)
    values: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if not field.types or field.types[0] == GGUFValueType.ARRAY:
            continue
        values[name] = field.contents()
    return values


def check_embedded(path: Path, tokenizer: Any) -> dict[str, Any]:
    """The chat template and end-of-turn token the converter embedded are the base's; GgufFailed otherwise (a GGUF
    whose runner would format chats differently, or not stop, must not leave as this model)."""
    found = metadata(path)
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates: llama.cpp embeds the default one as tokenizer.chat_template
        template = template.get("default", "")
    template = str(template)
    if template and found.get("tokenizer.chat_template") != template:
        raise GgufFailed(f"{path.name} does not carry the base's chat template")
    eos = tokenizer.eos_token_id
    if eos is not None and found.get("tokenizer.ggml.eos_token_id") != eos:
        raise GgufFailed(
            f"{path.name} ends a reply at token {found.get('tokenizer.ggml.eos_token_id')}, the base at {eos}"
        )
    return found


def install(sdist: Path | None = None) -> Path:
    """Unpack llama.cpp's converters and gguf-py from the llama-cpp-python sdist of the installed version (fetched
    with pip, or the file given) into the environment's data folder; only regular files of those paths."""
    version = installed_version()
    if version is None:
        raise GgufUnavailable(f"install llama-cpp-python first (pip install 'ftcli[gguf]'); {install_hint()}")
    target = default_sources(version)
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as work:
        if sdist is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            subprocess.run([*command, "--dest", work, f"{DISTRIBUTION}=={version}"], check=True)
            sdist = next(Path(work).glob("*.tar.gz"))
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with tarfile.open(sdist, "r:gz") as archive:
            wanted = [member for member in archive.getmembers() if member.isfile() and _converter_path(member.name)]
            for member in wanted:
                member.name = _converter_path(member.name) or ""
            archive.extractall(partial, members=wanted, filter="data")  # no links, nothing outside the folder
        if not (partial / "convert_hf_to_gguf.py").is_file():
            raise GgufUnavailable(f"{sdist.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def _converter_path(name: str) -> str | None:
    """`llama_cpp_python-X/vendor/llama.cpp/<member>` → `<member>` for the converter's files, else None."""
    parts = name.split("/", 3)
    if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
        return None
    inner = parts[3]
    keep = any(inner == m or (m.endswith("/") and inner.startswith(m)) for m in CONVERTER_MEMBERS)
    return inner if keep and ".." not in inner.split("/") and "/__pycache__/" not in f"/{inner}" else None


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] != "install" or len(arguments) > 2:
        sys.stderr.write("usage: python -m ftcli.server.gguf_export install [LLAMA_CPP_PYTHON_SDIST.tar.gz]\n")
        return 2
    try:
        target = install(Path(arguments[1]) if len(arguments) == 2 else None)
    except (GgufUnavailable, subprocess.CalledProcessError, OSError, tarfile.TarError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"llama.cpp's converter is in {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
