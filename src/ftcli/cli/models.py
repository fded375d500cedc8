"""`ftcli models`: the backend's models with their base model, owner and the day they stop serving."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.output import print_json, stdout


def models(
    ctx: typer.Context,
    fine_tuned: Annotated[bool, typer.Option("--fine-tuned", help="Only fine-tuned models (ft:...).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the models as JSON.")] = False,
) -> None:
    """Models with base model, owner and shutdown date (the API's, else ftcli's catalog), days left highlighted."""
    from ftcli.render.models import models_table
    from ftcli.service.models import list_models

    app = app_context(ctx)
    found = list_models(app.client(), fine_tuned_only=fine_tuned)
    if as_json or app.json:
        rows = [{**dataclasses.asdict(m), "days_left": m.days_left()} for m in found]
        print_json([{k: (str(v) if k == "shutdown_date" and v else v) for k, v in row.items()} for row in rows])
        return
    stdout().print(models_table(found))
