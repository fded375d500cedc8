"""The models table: id, base model, owner and the day each stops serving, with the days left highlighted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text


def days_left_text(days: int | None) -> Text:
    if days is None:
        return Text("-", style="dim")
    if days <= 0:
        return Text("shut down", style="bold red")
    style = "bold red" if days <= 30 else "yellow" if days <= 90 else "green"
    return Text(f"{days} days", style=style)


def models_table(models: Sequence[Any], today: dt.date | None = None) -> Table:
    """Rows of `service.models.ModelView`."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("model", "base model", "owner", "shutdown", "left"):
        table.add_column(column, overflow="fold")
    for model in sorted(models, key=lambda m: (m.shutdown_date or dt.date.max, m.id)):
        shutdown = f"{model.shutdown_date} ({model.shutdown_source})" if model.shutdown_date else "-"
        table.add_row(
            model.id,
            model.base_model if model.fine_tuned else "",
            model.owned_by or "",
            shutdown,
            days_left_text(model.days_left(today)),
        )
    return table
