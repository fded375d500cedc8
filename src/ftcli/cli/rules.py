"""`ftcli rules [CODE]`: every rule code check knows, with its severity and why it matters (from the one registry);
with a code (or a rule's name), that rule."""

from __future__ import annotations

from typing import Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.data.rules.registry import RULES
from ftcli.render.rules import rule_document, rule_view, rules_markdown, rules_table
from ftcli.service.errors import UsageError


def rules(
    ctx: typer.Context,
    code: Annotated[
        str | None, typer.Argument(metavar="CODE", help="One rule, by code (FT104) or name (wrong-method-format).")
    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="The rules as a Markdown page (docs/rules.md).")] = False,
) -> None:
    """List the rule codes of `ftcli check` (use them with --select and --ignore), or show one rule.
    With --json: the list, or with CODE the rule as one object (plus its group, docs and the profiles that leave it
    out)."""
    app = app_context(ctx)
    if code is not None:
        wanted = code.strip()
        rule = RULES.get(wanted.upper()) or next((r for r in RULES.values() if r.name == wanted.lower()), None)
        if rule is None:
            raise UsageError(f"no rule {code!r}", hint="`ftcli rules` lists every code and name")
        emit(app, rule_document(rule), lambda: rule_view(rule))
        return
    if markdown:  # docs/rules.md; under --json the one document carries it
        text = rules_markdown()
        emit(app, {"markdown": text}, lambda: text.removesuffix("\n"))
        return
    data = [
        {"code": r.code, "name": r.name, "severity": r.severity.value, "why": r.why, "status": r.status}
        for r in RULES.values()
    ]
    emit(app, data, rules_table)
