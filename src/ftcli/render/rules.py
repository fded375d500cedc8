"""Views of the rule registry: the table `ftcli rules` prints, and docs/rules.md (generated: `ftcli rules
--markdown > docs/rules.md`; a test keeps the committed page equal to it)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ftcli.data.rules.registry import PROFILES, RULES, Rule, matches

GROUPS = {
    "FT0": "Bytes and JSON",
    "FT1": "Record schema",
    "FT2": "Messages and roles",
    "FT3": "Tokens, limits and the model",
    "FT4": "The dataset as a whole",
    "FT5": "Personal data and secrets",
}


def rules_table() -> Table:
    view = Table("code", "name", "default", "why", show_edge=False)
    for rule in RULES.values():
        view.add_row(rule.code, rule.name, rule.severity.value, rule.why)
    return view


def rule_document(rule: Rule) -> dict[str, Any]:
    """One rule as `ftcli rules` lists it, with its group, where the docs describe it, and the check profiles that
    leave it out."""
    group = GROUPS.get(rule.code[:3], "")
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity.value,
        "why": rule.why,
        "status": rule.status,
        "group": group,
        "docs": f"docs/rules.md#{rule.code[:3].lower()}xx-{'-'.join(group.lower().replace(',', '').split())}",
        "left_out_by": [profile.name for profile in PROFILES.values() if matches(rule.code, profile.ignore)],
    }


def rule_view(rule: Rule) -> Group:
    document = rule_document(rule)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("severity", f"{document['severity']} by default ({document['status']})")
    table.add_row("group", f"{rule.code[:3]}xx: {document['group']}")
    table.add_row("why", document["why"])
    if document["left_out_by"]:
        table.add_row("left out by", ", ".join(f"the {name} profile" for name in document["left_out_by"]))
    table.add_row("use", f"ftcli check FILE --select {rule.code} (or --ignore {rule.code}, --ignore {rule.name})")
    table.add_row("docs", document["docs"])
    return Group(Text.assemble((rule.code, "bold"), " ", (rule.name, "cyan")), table)


def rules_markdown() -> str:
    lines = [
        "# Rules of `ftcli check`",
        "",
        "Generated from `src/ftcli/data/rules/registry.py` by `ftcli rules --markdown`; do not edit by hand.",
        "Select or ignore rules by code (`FT204`), prefix (`FT2`) or name (`no-assistant-message`).",
    ]
    for prefix, title in GROUPS.items():
        lines += ["", f"## {prefix}xx: {title}", "", "| code | name | default | why |", "|---|---|---|---|"]
        for rule in RULES.values():
            if rule.code.startswith(prefix):
                why = rule.why.replace("|", "\\|")
                lines.append(f"| {rule.code} | `{rule.name}` | {rule.severity.value} | {why} |")
    lines += ["", "## Profiles", "", "| profile | leaves out | why |", "|---|---|---|"]
    for profile in PROFILES.values():
        lines.append(f"| `{profile.name}` | {', '.join(f'`{s}`' for s in profile.ignore)} | {profile.why} |")
    return "\n".join(lines) + "\n"
