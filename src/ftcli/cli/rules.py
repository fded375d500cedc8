"""`ftcli rules`: every rule code check knows, with its severity and why it matters."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from ftcli.cli.output import stdout
from ftcli.data.rules.registry import RULES


def rules(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rules as JSON.")] = False,
) -> None:
    """List the rule codes of `ftcli check` (use them with --select and --ignore)."""
    if as_json:
        data = [
            {"code": r.code, "name": r.name, "severity": r.severity.value, "why": r.why, "status": r.status}
            for r in RULES.values()
        ]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table("code", "name", "default", "why", show_edge=False)
    for rule in RULES.values():
        table.add_row(rule.code, rule.name, rule.severity.value, rule.why)
    stdout().print(table)
