"""The model catalog: per fine-tunable model, its encoding, limits, price, methods and shutdown date.

The figures live in `catalog.toml` (data, with sources), not in code. Unknown figures are `None`.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

DEFAULT_ENCODING = "o200k_base"
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ftcli knows about one fine-tunable base model."""

    name: str
    encoding: str
    training_context: int | None
    price_per_1m_training_tokens: float | None
    methods: tuple[str, ...]
    shutdown_date: dt.date | None
    source: str
    aliases: tuple[str, ...] = ()
    known: bool = True


@dataclass(frozen=True, slots=True)
class Catalog:
    models: dict[str, ModelInfo]
    last_job_creation: dt.date | None

    def lookup(self, model: str) -> ModelInfo:
        """Resolve any model name (alias, dated name, `ft:` name) to its base model's entry.

        An unknown model gets a placeholder with `known=False`, the default encoding and no figures.
        """
        base = base_model(model)
        if base in self.models:
            return self.models[base]
        for info in self.models.values():
            if base in info.aliases:
                return info
        # A dated snapshot we don't list: fall back to its family's entry when one alias is a prefix.
        for info in self.models.values():
            if any(
                base.startswith(alias + "-") and base[len(alias) + 1 : len(alias) + 2].isdigit()
                for alias in info.aliases
            ):
                return info
        return ModelInfo(
            name=base,
            encoding=DEFAULT_ENCODING,
            training_context=None,
            price_per_1m_training_tokens=None,
            methods=("sft", "dpo"),
            shutdown_date=None,
            source="not in ftcli's catalog: tokens counted with o200k_base; limits and price unknown",
            known=False,
        )


def base_model(model: str) -> str:
    """`ft:gpt-4.1-mini-2025-04-14:org:suffix:id` → `gpt-4.1-mini-2025-04-14`; other names unchanged."""
    if model.startswith("ft:"):
        return model[3:].split(":", 1)[0]
    return model


@cache
def load_catalog() -> Catalog:
    text = resources.files("ftcli.data").joinpath("catalog.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    models: dict[str, ModelInfo] = {}
    for name, entry in raw["models"].items():
        models[name] = ModelInfo(
            name=name,
            encoding=entry["encoding"],
            training_context=entry.get("training_context"),
            price_per_1m_training_tokens=entry.get("price_per_1m_training_tokens"),
            methods=tuple(entry.get("methods", ("sft",))),
            shutdown_date=_date(entry.get("shutdown_date")),
            source=entry["source"],
            aliases=tuple(entry.get("aliases", ())),
        )
    return Catalog(models=models, last_job_creation=_date(raw["platform"].get("openai_last_job_creation")))


def _date(value: object) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
