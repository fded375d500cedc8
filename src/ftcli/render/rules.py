"""Views of the rule registry: the table `ftcli rules` prints, and docs/rules.md (generated: `ftcli rules
--markdown > docs/rules.md`; a test keeps the committed page equal to it)."""

from __future__ import annotations

from rich.table import Table

from ftcli.data.rules.registry import PROFILES, RULES

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
