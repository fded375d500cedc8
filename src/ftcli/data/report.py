"""The result of `check`: diagnostics, statistics and the estimate, which decides its own exit code.

`Report.to_dict()` is the `--format json` schema (documented in docs/check-json.md; bump
`SCHEMA_VERSION` on any incompatible change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftcli.data.diagnostics import Diagnostic, Severity
from ftcli.data.estimate import Estimate

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

SCHEMA_VERSION = 1
HISTOGRAM_BINS = 10


@dataclass(frozen=True, slots=True)
class Distribution:
    count: int
    total: int
    min: int
    max: int
    mean: float
    median: float
    p5: float
    p95: float
    histogram: tuple[tuple[float, float, int], ...]  # (low, high, count) per bin

    @classmethod
    def of(cls, values: npt.NDArray[np.int64]) -> Distribution:
        import numpy as np

        if values.size == 0:
            return cls(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, ())
        p5, median, p95 = (float(x) for x in np.percentile(values, [5, 50, 95]))
        counts, edges = np.histogram(values, bins=min(HISTOGRAM_BINS, max(1, int(np.unique(values).size))))
        bins = tuple((float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(len(counts)))
        return cls(
            count=int(values.size),
            total=int(values.sum()),
            min=int(values.min()),
            max=int(values.max()),
            mean=round(float(values.mean()), 2),
            median=median,
            p5=p5,
            p95=p95,
            histogram=bins,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "median": self.median,
            "p5": self.p5,
            "p95": self.p95,
            "histogram": [{"low": lo, "high": hi, "count": n} for lo, hi, n in self.histogram],
        }


@dataclass(frozen=True, slots=True)
class Statistics:
    messages_per_example: Distribution
    tokens_per_example: Distribution
    trained_tokens_per_example: Distribution
    over_limit: int

    def to_dict(self) -> dict[str, object]:
        return {
            "messages_per_example": self.messages_per_example.to_dict(),
            "tokens_per_example": self.tokens_per_example.to_dict(),
            "trained_tokens_per_example": self.trained_tokens_per_example.to_dict(),
            "examples_over_limit": self.over_limit,
        }


@dataclass(frozen=True, slots=True)
class Report:
    file: str
    validation_file: str | None
    model: str
    encoding: str
    context_limit: int | None
    method: str  # "sft" | "dpo"
    records: int  # non-blank lines
    examples: int  # records of the file's format, counted for tokens
    validation_examples: int
    diagnostics: list[Diagnostic]
    statistics: Statistics
    estimate: Estimate
    largest_examples: tuple[tuple[int, int], ...] = ()  # (line, tokens), largest first, at most 10

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    def exit_code(self, *, strict: bool = False) -> int:
        """0 clean, 1 errors (or warnings under --strict). Usage and I/O errors (2) never reach a report."""
        if self.errors or (strict and self.warnings):
            return 1
        return 0

    def to_dict(self) -> dict[str, object]:
        return {
            "version": SCHEMA_VERSION,
            "file": self.file,
            "validation_file": self.validation_file,
            "model": self.model,
            "encoding": self.encoding,
            "context_limit": self.context_limit,
            "method": self.method,
            "records": self.records,
            "examples": self.examples,
            "validation_examples": self.validation_examples,
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.count(Severity.INFO),
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "statistics": self.statistics.to_dict(),
            "largest_examples": [{"line": line, "tokens": tokens} for line, tokens in self.largest_examples],
            "estimate": self.estimate.to_dict(),
        }
