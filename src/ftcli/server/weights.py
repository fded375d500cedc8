"""Writing model directories so a crash never leaves a half-written one: save beside, then rename into place."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def save_pretrained_atomically(directory: Path, *parts: Any, state_dict: dict[str, Any] | None = None) -> None:
    """`save_pretrained` of each part (a model as safetensors, its tokenizer) into a temp folder, then one rename.
    `state_dict`: the model's weights when its own are not whole (shards of a sharded model)."""
    temp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)  # left by an interrupted save
    for part in parts:
        if hasattr(part, "state_dict"):
            extra: dict[str, Any] = {"state_dict": state_dict} if state_dict is not None else {}
            if len(getattr(part, "peft_config", ())) > 1:  # a DPO job's reference adapter beside it: not saved
                extra["selected_adapters"] = [part.active_adapter]
            part.save_pretrained(temp, safe_serialization=True, **extra)
        else:
            part.save_pretrained(temp)
    shutil.rmtree(directory, ignore_errors=True)
    temp.rename(directory)
