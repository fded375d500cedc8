"""The models table: id, base model, owner and the day each stops serving, with the days left highlighted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from ftcli.render.terminal import WholeTable


def days_left_text(days: int | None) -> Text:
    if days is None:
        return Text("-", style="dim")
    if days <= 0:
        return Text("shut down", style="bold red")
    style = "bold red" if days <= 30 else "yellow" if days <= 90 else "green"
    return Text(f"{days} days", style=style)


def models_table(models: Sequence[Any], today: dt.date | None = None) -> Table:
    """Rows of `service.models.ModelView`."""
    rows = sorted(models, key=lambda m: (m.shutdown_date or dt.date.max, m.id))
    bases = [model.base_model if model.fine_tuned else "" for model in rows]
    left = [days_left_text(model.days_left(today)) for model in rows]
    table = WholeTable(show_edge=False, header_style="bold")
    table.add_whole_column("model", [model.id for model in rows])
    table.add_whole_column("base model", bases)
    table.add_column("owner")
    table.add_column("shutdown")
    table.add_whole_column("left", [text.plain for text in left])
    for model, base, days in zip(rows, bases, left, strict=True):
        shutdown = f"{model.shutdown_date} ({model.shutdown_source})" if model.shutdown_date else "-"
        table.add_row(Text(model.id), Text(base), Text(model.owned_by or ""), shutdown, days)
    return table
