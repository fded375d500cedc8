"""`ftcli rules`: every rule code check knows, with its severity and why it matters (from the one registry)."""

from __future__ import annotations

from typing import Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.data.rules.registry import RULES
from ftcli.render.rules import rules_markdown, rules_table


def rules(
    ctx: typer.Context,
    markdown: Annotated[bool, typer.Option("--markdown", help="The rules as a Markdown page (docs/rules.md).")] = False,
) -> None:
    """List the rule codes of `ftcli check` (use them with --select and --ignore)."""
    if markdown:  # docs/rules.md; under --json the one document carries it
        text = rules_markdown()
        emit(app_context(ctx), {"markdown": text}, lambda: text.removesuffix("\n"))
        return
    data = [
        {"code": r.code, "name": r.name, "severity": r.severity.value, "why": r.why, "status": r.status}
        for r in RULES.values()
    ]
    emit(app_context(ctx), data, rules_table)
