"""`ftcli eval`'s views of one EvalReport: the rich tables (per model and grader: mean, 95 % interval, wins/ties/losses
against the first model; the worst cases side by side with the reference) and a self-contained HTML report (no
assets from anywhere, the serve page's colours)."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ftcli.render.terminal import WholeTable

ANSWER_CHARS = 160  # of an answer or reference shown in the terminal
# A spreadsheet reads a cell that starts with one of these as a formula (`=HYPERLINK(…)`, `+cmd|…`, `@SUM(…)`): such a
# cell of text gets a leading ' (OWASP's advice on CSV injection), which spreadsheets show as plain text
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def report_view(report: Any) -> Group:
    parts: list[Any] = [
        Text(f"{report.data}: {len(report.cases)} cases, graders {', '.join(report.graders)}", style="bold")
    ]
    table = WholeTable(show_edge=False, header_style="bold")
    table.add_whole_column("model", [model.spec.label for model in report.models])
    for name in report.graders:
        table.add_column(name, justify="right")
    for model in report.models:
        cells = []
        for name in report.graders:
            result = model.results[name]
            cells.append(_cell(result))
        table.add_row(Text(model.spec.label), *cells)
    parts.append(table)
    if len(report.models) > 1:
        parts.append(Text(f"wins/ties/losses against {report.models[0].spec.label}, per case", style="dim"))
    first_grader = report.graders[0]
    for model in report.models:
        worst = report.worst(model, first_grader)
        if not worst:
            continue
        title = Text(f"{model.spec.label}: lowest {first_grader}", style="italic")
        cases = Table(title=title, show_edge=False, header_style="bold")
        for column in ("line", first_grader, "reference", "answer"):
            cases.add_column(column, overflow="fold")
        for index in worst:
            case = report.cases[index]
            cases.add_row(
                str(case.line),
                f"{model.scores[first_grader][index]:.3f}",
                Text(_short(case.reference or _calls(case.reference_calls))),
                Text(_short(model.answers[index].text or _calls(list(model.answers[index].calls)))),
            )
        parts.append(cases)
    if report.problems:
        parts.append(Text(f"{len(report.problems)} line(s) skipped:", style="yellow"))
        parts += [Text(f"  line {p.line}: {p.message}", style="yellow") for p in report.problems[:10]]
    for failure in report.failures():
        parts.append(Text(f"below --min-score: {failure}", style="bold red"))
    return Group(*parts)


def _cell(result: Any) -> Text:
    summary = result.summary
    if summary.mean is None:
        return Text("-", style="dim")
    text = Text(f"{summary.mean:.3f} [{summary.low:.3f}–{summary.high:.3f}]")
    if result.versus_first is not None:
        versus = result.versus_first
        text.append(f" {versus.wins}/{versus.ties}/{versus.losses}", style="cyan")
    return text


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ANSWER_CHARS else flat[: ANSWER_CHARS - 1] + "…"


def _calls(calls: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c.get('name')}({c.get('arguments')})" for c in calls)


def cases_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The per-case CSV of `eval --out`: one row per case and model, text cells safe to open in a spreadsheet
    (numbers, scores among them, stay numbers)."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]) if rows else ["line"])
    writer.writeheader()
    writer.writerows({key: _spreadsheet_text(value) for key, value in row.items()} for row in rows)
    return table.getvalue()


def _spreadsheet_text(value: Any) -> Any:
    """A cell a spreadsheet would run as a formula gets a leading `'`; a plain number (`-5`, `+1.5e3`), which a
    spreadsheet reads as a number anyway, stays as written (math evals are full of them)."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS) or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def report_html(report: Any) -> str:
    """The whole report as one HTML page: the summary table, then every case with each model's answer."""
    e = html.escape
    head = "".join(f"<th>{e(name)}</th>" for name in report.graders)
    rows = []
    for model in report.models:
        cells = []
        for name in report.graders:
            result = model.results[name]
            summary = result.summary
            value = "-" if summary.mean is None else f"{summary.mean:.3f} [{summary.low:.3f}–{summary.high:.3f}]"
            if result.versus_first is not None:
                v = result.versus_first
                value += f" <span class=wtl>{v.wins}/{v.ties}/{v.losses}</span>"
            cells.append(f"<td>{value}</td>")
        rows.append(f"<tr><th scope=row>{e(model.spec.label)}</th>{''.join(cells)}</tr>")
    cases = []
    for index, case in enumerate(report.cases):
        prompt = e(str(case.prompt[-1].get("content") or "")) if case.prompt else ""
        answers = "".join(
            f"<div class=answer><h4>{e(m.spec.label)}</h4><p>{e(_answer_text(m.answers[index]))}</p>"
            f"<p class=scores>{e(', '.join(f'{g} {_score(m.scores[g][index])}' for g in report.graders))}</p></div>"
            for m in report.models
        )
        cases.append(
            f"<section class=case id=line-{case.line}><h3>line {case.line}</h3><p class=prompt>{prompt}</p>"
            f"<div class=answers><div class='answer reference'><h4>reference</h4>"
            f"<p>{e(case.reference or _calls(case.reference_calls))}</p></div>{answers}</div></section>"
        )
    failures = "".join(f"<li>{e(f)}</li>" for f in report.failures())
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>ftcli eval: {e(report.data)}</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>
:root{{--fg:#1d2330;--muted:#667085;--line:#d9dde5;--accent:#2952cc;--ok:#1a7f37;--bad:#c0362c;--bg:#f7f8fa;
font-family:system-ui,sans-serif;color:var(--fg);background:var(--bg)}}
body{{margin:0}}main{{max-width:1100px;margin:auto;padding:1rem}}h1{{font-size:1.4rem}}
table{{border-collapse:collapse;background:#fff;margin:.8rem 0}}
th,td{{padding:.4rem .6rem;border-bottom:1px solid var(--line);text-align:right}}
th[scope=row],thead th:first-child{{text-align:left}}.wtl{{color:var(--accent)}}.fail{{color:var(--bad)}}
.case{{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.8rem;margin:1rem 0}}
.prompt{{color:var(--muted)}}.answers{{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.8rem}}
.answer{{background:#f3f4f6;border-radius:4px;padding:.5rem;white-space:pre-wrap}}
.reference{{border-left:3px solid var(--ok)}}.scores{{color:var(--muted);font-size:.8rem}}h3,h4{{margin:.2rem 0}}
</style></head><body><main>
<h1>ftcli eval — {e(report.data)}</h1>
<p>{len(report.cases)} cases · graders: {e(", ".join(report.graders))} · mean [95 % interval] wins/ties/losses
against {e(report.models[0].spec.label)}</p>
<table id=summary><thead><tr><th scope=col>model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
{f"<ul class=fail id=failures>{failures}</ul>" if failures else ""}
{"".join(cases)}
</main></body></html>
"""


def _answer_text(answer: Any) -> str:
    return str(answer.text or _calls(list(answer.calls)))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
