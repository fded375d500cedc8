"""`ftcli models`: the backend's models with their base model, owner and the day they stop serving."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit


def models(
    ctx: typer.Context,
    fine_tuned: Annotated[bool, typer.Option("--fine-tuned", help="Only fine-tuned models (ft:...).")] = False,
) -> None:
    """Models with base model, owner and shutdown date (the API's, else ftcli's catalog), days left highlighted."""
    from ftcli.data import clock
    from ftcli.render.models import models_table
    from ftcli.service.models import list_models

    app = app_context(ctx)
    found = list_models(app.client(), fine_tuned_only=fine_tuned)
    today = clock.today()
    rows = [{**dataclasses.asdict(m), "days_left": m.days_left(today)} for m in found]
    emit(app, rows, lambda: models_table(found, today))
