"""Models on a backend with the day they stop serving: from the API's `shutdown_date` where present, else from
ftcli's catalog (fine-tuned models inherit their base model's date)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftcli.data import clock
from ftcli.data.catalog import base_model, load_catalog
from ftcli.service.errors import translated

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass(frozen=True, slots=True)
class ModelView:
    id: str
    owned_by: str | None
    created: int | None
    base_model: str
    fine_tuned: bool
    shutdown_date: dt.date | None
    shutdown_source: str | None  # "api" or "catalog"

    def days_left(self, today: dt.date | None = None) -> int | None:
        if self.shutdown_date is None:
            return None
        return clock.days_until(self.shutdown_date, today_is=today)


def shutdown_of(model_id: str, api_value: Any = None) -> tuple[dt.date | None, str | None]:
    if api_value:
        try:
            if isinstance(api_value, int | float):
                return dt.datetime.fromtimestamp(api_value, dt.UTC).date(), "api"
            return dt.date.fromisoformat(str(api_value)[:10]), "api"
        except ValueError:
            pass
    info = load_catalog().lookup(model_id)
    return (info.shutdown_date, "catalog") if info.known and info.shutdown_date else (None, None)


def list_models(client: OpenAI, *, fine_tuned_only: bool = False) -> list[ModelView]:
    with translated():
        models = list(client.models.list())
    views = []
    for model in models:
        fine_tuned = model.id.startswith("ft:")
        if fine_tuned_only and not fine_tuned:
            continue
        date, source = shutdown_of(model.id, getattr(model, "shutdown_date", None))
        views.append(
            ModelView(
                model.id,
                getattr(model, "owned_by", None),
                getattr(model, "created", None),
                base_model(model.id),
                fine_tuned,
                date,
                source,
            )
        )
    return views
