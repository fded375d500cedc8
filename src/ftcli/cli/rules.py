"""`ftcli rules`: every rule code check knows, with its severity and why it matters."""

from __future__ import annotations

import typer
from rich.table import Table

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.data.rules.registry import RULES


def rules(ctx: typer.Context) -> None:
    """List the rule codes of `ftcli check` (use them with --select and --ignore)."""
    data = [
        {"code": r.code, "name": r.name, "severity": r.severity.value, "why": r.why, "status": r.status}
        for r in RULES.values()
    ]

    def table() -> Table:
        view = Table("code", "name", "default", "why", show_edge=False)
        for rule in RULES.values():
            view.add_row(rule.code, rule.name, rule.severity.value, rule.why)
        return view

    emit(app_context(ctx), data, table)
