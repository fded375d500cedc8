"""The result of `check`: diagnostics, statistics and the estimate, which decides its own exit code.

`Report.to_dict()` is the `--format json` schema (documented in docs/check-json.md; bump
`SCHEMA_VERSION` on any incompatible change).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ftcli.data.diagnostics import Diagnostic, Severity
from ftcli.data.estimate import Estimate

SCHEMA_VERSION = 2  # 2: statistics and estimate are null for a file with no examples (1 gave zeros)
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
    def of(cls, counts: Mapping[int, int]) -> Distribution:
        """From value → number of examples: memory grows with distinct values, not with examples.

        Percentiles interpolate linearly between order statistics, as numpy.percentile does by default.
        """
        import numpy as np

        n = sum(counts.values())
        if n == 0:
            return cls(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, ())
        values = np.array(sorted(counts), dtype=np.int64)
        weights = np.array([counts[v] for v in values.tolist()], dtype=np.int64)
        ends = np.cumsum(weights)  # the order statistics 0..ends[i]-1 all equal values[i]
        total = int((values * weights).sum())

        def order_statistic(k: int) -> float:
            return float(values[int(np.searchsorted(ends, k, side="right"))])

        def percentile(p: float) -> float:
            rank = p / 100 * (n - 1)
            low = int(rank)
            lower = order_statistic(low)
            return lower + (rank - low) * (order_statistic(min(low + 1, n - 1)) - lower)

        bin_counts, edges = np.histogram(values, bins=min(HISTOGRAM_BINS, len(values)), weights=weights)
        bins = tuple((float(edges[i]), float(edges[i + 1]), int(bin_counts[i])) for i in range(len(bin_counts)))
        return cls(
            count=n,
            total=total,
            min=int(values[0]),
            max=int(values[-1]),
            mean=round(total / n, 2),
            median=percentile(50),
            p5=percentile(5),
            p95=percentile(95),
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
    method: str  # "sft" | "dpo" | "reinforcement"
    records: int  # non-blank lines
    examples: int  # records of the file's format, counted for tokens
    validation_examples: int
    diagnostics: list[Diagnostic]
    statistics: Statistics
    estimate: Estimate
    largest_examples: tuple[tuple[int, int], ...] = ()  # (line, tokens), largest first, at most 10
    counted_with: str = "tiktoken"  # the exact counter used: "bpe-openai" or "tiktoken"

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    def first_errors(self, limit: int = 3) -> list[str]:
        """The first errors in words ("line 3: FT002 invalid JSON: ..."), for a message that refuses the file; one
        in the validation file names it ("valid.jsonl line 3: ...")."""
        errors = [d for d in self.diagnostics if d.severity is Severity.ERROR][:limit]
        return [f"{self._where(d)}{d.code} {d.message}" for d in errors]

    def _where(self, diagnostic: Diagnostic) -> str:
        file = f"{diagnostic.file} " if diagnostic.file and diagnostic.file != self.file else ""
        if diagnostic.line:
            return f"{file}line {diagnostic.line}: "
        return f"{file.rstrip()}: " if file else ""

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
            "counted_with": self.counted_with,
            "context_limit": self.context_limit,
            "method": self.method,
            "records": self.records,
            "examples": self.examples,
            "validation_examples": self.validation_examples,
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.count(Severity.INFO),
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            # a file with no examples (raw data, only errors) has no statistics and no cost, rather than zeros
            "statistics": self.statistics.to_dict() if self.examples else None,
            "largest_examples": [{"line": line, "tokens": tokens} for line, tokens in self.largest_examples],
            "estimate": self.estimate.to_dict() if self.examples else None,
        }
