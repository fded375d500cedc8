"""A diagnostic is a value: rule code + location + message + optional fix (as in ruff and sqlfluff)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Applicability(StrEnum):
    """Whether `ftcli convert` could apply a fix without changing meaning."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    DISPLAY_ONLY = "display-only"


@dataclass(frozen=True, slots=True)
class Fix:
    hint: str
    applicability: Applicability = Applicability.DISPLAY_ONLY


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule yields: the engine stamps line and severity to make a `Diagnostic`."""

    code: str
    message: str
    path: str | None = None
    column: int | None = None  # 1-based column in the line (bytes/JSON rules); text rules give a path instead
    fix: Fix | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # e.g. FT204: stable forever, documented by `ftcli rules`
    severity: Severity  # after --pii/--select/--ignore, applied by the engine, not the rule
    line: int | None  # 1-based line in the file; None for findings about the whole file
    path: str | None  # JSON path, e.g. "messages[3].role"
    message: str
    column: int | None = None
    fix: Fix | None = None
    file: str | None = None  # which input the line belongs to (training or validation)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "fix": None if self.fix is None else {"hint": self.fix.hint, "applicability": self.fix.applicability.value},
        }
