"""The human view of a check Report: diagnostics like a linter, then statistics, histograms and the estimate."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ftcli.data.check.report import Distribution, Report
from ftcli.data.diagnostics import Diagnostic, Severity
from ftcli.data.local_bases import TEMPLATE_ENCODING

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_BAR = 30


def render_report(report: Report) -> RenderableType:
    parts: list[RenderableType] = [render_diagnostic(d) for d in report.diagnostics]
    if report.diagnostics:
        parts.append(Text())
    parts.append(_summary(report))
    if report.examples:  # a file of raw data has no examples: no statistics, no cost
        parts += [_stats_table(report), *_histograms(report), _estimate(report)]
    parts.append(_verdict(report))
    return Group(*parts)


def render_diagnostic(d: Diagnostic) -> Text:
    where = d.file or ""
    if d.line is not None:
        where += f":{d.line}" + (f":{d.column}" if d.column else "")
    text = Text()
    text.append(where, style="bold")
    text.append(": ")
    text.append(f"{d.code} {d.severity.value}", style=_STYLE[d.severity])
    if d.path:
        text.append(f" [{d.path}]", style="dim")
    text.append(f" {d.message}")
    if d.fix:
        text.append(f"\n    fix: {d.fix.hint}", style="green")
    return text


def _summary(report: Report) -> Text:
    limit = f"{report.context_limit:,}" if report.context_limit else "unknown"
    counted = (
        f"its own tokenizer and chat template, max_seq_length {limit}"
        if report.encoding == TEMPLATE_ENCODING
        else f"{report.encoding}, context {limit}"
    )
    line = (
        f"{report.file}: {report.examples:,} example{'s' * (report.examples != 1)} ({report.method}), "
        f"model {report.model} ({counted})"
    )
    if report.validation_file:
        line += f"; validation {report.validation_file}: {report.validation_examples:,} examples"
    return Text(line, style="bold")


def _stats_table(report: Report) -> Table:
    table = Table(title="Per example", title_justify="left", show_edge=False, pad_edge=False)
    for header in ("", "min", "p5", "median", "mean", "p95", "max", "total"):
        table.add_column(header, justify="right" if header else "left")
    stats = report.statistics
    for name, dist in (
        ("messages", stats.messages_per_example),
        ("tokens", stats.tokens_per_example),
        ("trained tokens", stats.trained_tokens_per_example),
    ):
        table.add_row(
            name, *(_num(v) for v in (dist.min, dist.p5, dist.median, dist.mean, dist.p95, dist.max, dist.total))
        )
    return table


def _histograms(report: Report) -> list[RenderableType]:
    dist = report.statistics.tokens_per_example
    if dist.count < 2:
        return []
    return [Text("Tokens per example", style="bold"), histogram(dist)]


def histogram(dist: Distribution) -> Text:
    peak = max((n for _, _, n in dist.histogram), default=0) or 1
    text = Text()
    for low, high, count in dist.histogram:
        bar = "█" * max(1 if count else 0, round(_BAR * count / peak))
        text.append(f"{low:>10,.0f} – {high:<10,.0f} ")
        text.append(f"{bar:<{_BAR}}", style="blue")
        text.append(f" {count:,}\n")
    return text


def _estimate(report: Report) -> Text:
    est = report.estimate
    over = report.statistics.over_limit
    text = Text()
    if over:
        text.append(f"{over:,} examples exceed the context limit and will be truncated.\n", style="yellow")
    unpriced = (
        "RFT is priced by training time" if report.method == "reinforcement" else "no confirmed price for this model"
    )
    cost = f"${est.cost_usd:,.2f}" if est.cost_usd is not None else f"unknown ({unpriced})"
    text.append(
        f"Training: {est.epochs} epochs ({est.epochs_source}) × {est.tokens_per_epoch:,} tokens = "
        f"{est.billed_tokens:,} billed tokens; estimated cost {cost}"
    )
    return text


def _verdict(report: Report) -> Text:
    errors, warnings = report.errors, report.warnings
    style = "bold red" if errors else ("yellow" if warnings else "bold green")
    word = "FAILED" if errors else "ok"
    return Text(f"{word}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}", style=style)


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
