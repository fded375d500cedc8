"""`check --format json`: the Report's versioned dict (schema in docs/check-json.md)."""

from __future__ import annotations

import json

from ftcli.data.report import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
