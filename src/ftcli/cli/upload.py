"""`ftcli upload FILE`: check, then stream to the backend with a progress bar; prints the file id."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr
from ftcli.cli.progress import upload_bar


def upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Training or validation file (JSONL).")],
    no_check: Annotated[bool, typer.Option("--no-check", help="Upload without running `check` first.")] = False,
    model: Annotated[str | None, typer.Option(help="Model to check limits for.")] = None,
    force: Annotated[bool, typer.Option(help="Upload even if the backend already has these bytes.")] = False,
    multipart: Annotated[
        bool | None,
        typer.Option(
            "--multipart/--single",
            help="Force the Uploads API (64 MB parts, resumable) or one request (default: by size).",
        ),
    ] = None,
) -> None:
    """Upload a training file: refused if `check` finds errors; reuses identical uploads; resumes big ones.
    Prints the file id; with --json, the file object."""
    from ftcli.data.check.engine import CheckOptions
    from ftcli.service.files import check_before_upload

    app = app_context(ctx)
    if not no_check:
        check_before_upload(file, CheckOptions(model=model))
    with upload_bar(app)(file) as on_progress:
        result = app.backend().upload(
            file, ledger=app.ledger(), force=force, multipart=multipart, on_progress=on_progress
        )
    note = " (already on the backend: reused)" if result.reused else ""
    if result.resumed_parts:
        note = f" (resumed: {result.resumed_parts} parts were already sent)"
    stderr().print(f"uploaded {file.name}{note}", highlight=False)
    emit(app, result.file, lambda: result.file.id)
