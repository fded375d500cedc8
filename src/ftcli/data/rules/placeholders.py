"""Template placeholders left in data (FT234): `{{name}}` in a dataset made to be filled in before training (as
LLaMA-Factory's identity data is). Trained as they are, the model learns to say the braces."""

from __future__ import annotations

import re
from typing import Any

from ftcli.data.diagnostics import Finding, Fix
from ftcli.data.tokens import iter_texts

# {{name}} as dataset templates write it; with spaces or dots ({{ secrets.TOKEN }}) it is more likely code
# (Jinja, GitHub Actions) that an answer quotes on purpose
_PLACEHOLDER = re.compile(r"\{\{[A-Za-z_][A-Za-z0-9_]*\}\}")


def placeholder_names(text: str) -> list[str]:
    """The placeholders in a text, each once, in order of appearance."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(text))) if "{{" in text else []


def unfilled_placeholders(record: Any) -> list[Finding]:
    found = []
    for path, value in iter_texts(record):
        if names := placeholder_names(value):
            found.append(
                Finding(
                    "FT234",
                    f"unfilled template placeholder{'s' * (len(names) > 1)} {', '.join(names)}",
                    path=path,
                    fix=Fix("fill it in before training (the data is a template: replace each {{…}} with its value)"),
                )
            )
    return found
