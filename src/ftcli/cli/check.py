"""`ftcli check FILE`: lint a training file, count its tokens, estimate the cost. Exit 0 clean, 1 errors, 2 usage."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.stdin import spooled_input
from ftcli.data.check.report import Report


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class PiiOption(StrEnum):
    warn = "warn"
    error = "error"
    off = "off"


class CounterOption(StrEnum):
    auto = "auto"
    bpe_openai = "bpe-openai"
    tiktoken = "tiktoken"


class MethodOption(StrEnum):
    sft = "sft"
    dpo = "dpo"
    reinforcement = "reinforcement"


def check(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Training file (JSONL), or - for stdin.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model to count tokens and limits for (default gpt-4o-mini-2024-07-18); a local base is counted "
            "with its own tokenizer and chat template.",
        ),
    ] = None,
    method: Annotated[
        MethodOption | None,
        typer.Option(
            help="sft, dpo or reinforcement (default: reinforcement with --grader-file, else from the first record)."
        ),
    ] = None,
    grader_file: Annotated[
        Path | None,
        typer.Option(
            help="Reinforcement fine-tuning's grader (OpenAI's grader JSON): validated, and every {{item.FIELD}} it "
            "reads looked for in every record."
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option("--validation", help="Validation file to check too, and for overlap with the training file."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, max=50, help="Epochs for the estimate (default: OpenAI's rule).")
    ] = None,
    pii: Annotated[PiiOption, typer.Option(help="Personal data and secrets: warn, error or off.")] = PiiOption.warn,
    select: Annotated[
        list[str] | None, typer.Option(help="Only these rule codes, prefixes or names (repeat or comma-separate).")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Skip these rule codes, prefixes or names.")] = None,
    strict: Annotated[bool, typer.Option(help="Warnings fail the check too (exit 1).")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="text, json (the same as --json) or github.")
    ] = OutputFormat.text,
    near_duplicates: Annotated[
        bool, typer.Option(help="Report examples that differ only in case, spacing or punctuation.")
    ] = True,
    max_seq_length: Annotated[
        int | None,
        typer.Option(
            min=16,
            help="For a local base (ftcli/tiny, smollm2-135m, a cached or folder model): the length its job cuts "
            "examples at (default: its context, at most 4096).",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes to use (default: one per CPU).")] = None,
    counter: Annotated[
        CounterOption,
        typer.Option(
            help="Token counter; both are exact. auto: GitHub's bpe-openai when installed (about 3× faster), "
            "else tiktoken, OpenAI's reference."
        ),
    ] = CounterOption.auto,
) -> None:
    """Lint a training file: every problem with its line and JSON path, exact token counts, cost."""
    from ftcli.cli.params import json_file
    from ftcli.data.check.engine import CheckOptions, check_file

    options = CheckOptions(
        model=model,
        method=method.value if method else None,
        epochs=epochs,
        pii=pii.value,
        select=_codes(select),
        ignore=_codes(ignore),
        near_duplicates=near_duplicates,
        workers=workers,
        counter=counter.value,
        max_seq_length=max_seq_length,
        grader=json_file(grader_file, "--grader-file") if grader_file is not None else None,
        grader_file=str(grader_file),
    )
    with spooled_input(file) as path:
        report = check_file(path, validation=validation, options=options)
    if file == "-":
        report = _renamed(report, "<stdin>")
    app = app_context(ctx)
    app.json = app.json or output is OutputFormat.json  # the report's versioned document (docs/check-json.md)
    emit(app, report, lambda: VIEWS[output](report))
    raise typer.Exit(report.exit_code(strict=strict))


def _text(report: Report) -> Any:
    from ftcli.render.check_text import render_report

    return render_report(report)


def _github(report: Report) -> str:
    from ftcli.render.check_github import render_github

    return render_github(report).removesuffix("\n")


# The report's views by --format; json is not a view but the report's own document, written by the output seam.
VIEWS: dict[OutputFormat, Callable[[Report], Any]] = {OutputFormat.text: _text, OutputFormat.github: _github}


def _codes(values: list[str] | None) -> tuple[str, ...]:
    return tuple(code.strip() for value in values or () for code in value.split(",") if code.strip())


def _renamed(report: Report, name: str) -> Report:
    """The report of a spooled stdin, about `name`: a fix's `convert` command reads stdin too (`ftcli convert -`)."""
    import dataclasses

    from ftcli.data.diagnostics import Fix
    from ftcli.data.formats.raw import converted_name, shell_word

    def command(fix: Fix | None) -> Fix | None:
        if fix is None:
            return None
        hint = fix.hint.replace(shell_word(converted_name(report.file)), "converted.jsonl")
        return dataclasses.replace(
            fix, hint=hint.replace(f"ftcli convert {shell_word(report.file)} ", "ftcli convert - ")
        )

    diagnostics = [
        dataclasses.replace(d, file=name if d.file == report.file else d.file, fix=command(d.fix))
        for d in report.diagnostics
    ]
    return dataclasses.replace(report, file=name, diagnostics=diagnostics)
