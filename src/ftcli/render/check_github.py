"""`check --format github`: GitHub Actions workflow commands, one annotation per diagnostic."""

from __future__ import annotations

from ftcli.data.check.report import Report
from ftcli.data.diagnostics import Diagnostic, Severity

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def render_github(report: Report) -> str:
    lines = [annotation(d, report.file) for d in report.diagnostics]
    counts = ", ".join(
        f"{n} {word}{'s' * (n != 1)}"
        for n, word in ((report.examples, "example"), (report.errors, "error"), (report.warnings, "warning"))
    )
    lines.append(f"ftcli check: {counts}")
    return "\n".join(lines) + "\n"


def annotation(d: Diagnostic, default_file: str) -> str:
    props = [f"file={_prop(d.file or default_file)}"]
    if d.line is not None:
        props.append(f"line={d.line}")
        if d.column:
            props.append(f"col={d.column}")
    props.append(f"title={d.code}")
    message = d.message + (f" [{d.path}]" if d.path else "") + (f" (fix: {d.fix.hint})" if d.fix else "")
    return f"::{_COMMAND[d.severity]} {','.join(props)}::{_data(message)}"


def _data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(value: str) -> str:
    return _data(value).replace(":", "%3A").replace(",", "%2C")
