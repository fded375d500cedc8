"""A job that continues a fine-tuned model of this server (OpenAI's `model: "ft:…"`, a checkpoint's name
included): the model or checkpoint it names, the adapter it starts from, and the LoRA settings that adapter fixes.

The new job trains the parent's adapter further (the same base, its LoRA weights loaded, not a fresh adapter), so
its first loss is the parent's last; its own adapter is again one of the base, so it is served like any other."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcli.server.protocol.jobs import FineTuningJob, JobParent
from ftcli.server.store import Store

# The job's LoRA settings → the names peft's adapter_config.json gives them
LORA_KEYS = {"lora_rank": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"}


@dataclass(frozen=True, slots=True)
class Start:
    """Where a continued job starts: its parent, and the folder of the parent's adapter."""

    parent: JobParent
    adapter: Path


def find_start(store: Store, model: str) -> Start | None:
    """The fine-tuned model or checkpoint of this server that `model` names; None where it names neither."""
    row = store.model(model)
    if row is not None and row["job_id"]:
        return Start(JobParent(job_id=row["job_id"], model=model, base=row["base"]), Path(row["adapter"]))
    checkpoint = store.checkpoint_named(model)
    if checkpoint is None:
        return None
    job = store.job(checkpoint["job_id"])
    if job is None:
        return None
    parent = JobParent(
        job_id=checkpoint["job_id"],
        model=model,
        checkpoint=checkpoint["id"],
        base=FineTuningJob.model_validate(job).base,
    )
    return Start(parent, Path(checkpoint["path"]))


def parent_adapter(store: Store, parent: JobParent) -> Path | None:
    """The adapter folder a continued job starts from, as the store lists it now; None where the model was deleted,
    or the checkpoint is no longer kept (a job keeps its last three)."""
    start = find_start(store, parent.model)
    if start is None or start.parent.job_id != parent.job_id or not has_adapter(start.adapter):
        return None
    return start.adapter


def has_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def lora_settings(adapter: Path) -> dict[str, Any]:
    """The LoRA settings an adapter was trained with (`lora_rank`, `lora_alpha`, `lora_dropout`), from its config."""
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    return {key: config[name] for key, name in LORA_KEYS.items() if name in config}
