"""Writing model directories so a crash never leaves a half-written one: save beside, then rename into place."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def save_pretrained_atomically(directory: Path, *parts: Any) -> None:
    """`save_pretrained` of each part (a model as safetensors, its tokenizer) into a temp folder, then one rename."""
    temp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)  # left by an interrupted save
    for part in parts:
        if hasattr(part, "state_dict"):
            part.save_pretrained(temp, safe_serialization=True)
        else:
            part.save_pretrained(temp)
    shutil.rmtree(directory, ignore_errors=True)
    temp.rename(directory)
