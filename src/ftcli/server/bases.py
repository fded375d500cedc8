"""Base models the local backend can fine-tune: `ftcli/tiny` (built on the spot) or a local Hugging Face model
directory (config + safetensors + tokenizer with a chat template). Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from ftcli.server.tiny import TINY_NAME, ensure_tiny


class UnknownBase(ValueError):
    pass


def resolve_base(model: str, data_dir: Path) -> Path:
    if model == TINY_NAME:
        return ensure_tiny(data_dir / "base-models" / "ftcli-tiny")
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise UnknownBase(f"unknown base model {model!r}: use {TINY_NAME} or the path of a local model directory")


KNOWN_BASES = (TINY_NAME,)


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{base}:local:{suffix or ''}:{job_id}"
