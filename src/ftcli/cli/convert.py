"""`ftcli convert INPUT -o OUTPUT`: raw data → OpenAI chat/DPO JSONL. Exit 0 ok, 1 records skipped, 2 usage."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr
from ftcli.cli.params import key_values
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from ftcli.data.convert.pipeline import ConvertResult


class PresetName(StrEnum):
    chatlaw = "chatlaw"
    alpaca = "alpaca"
    sharegpt = "sharegpt"
    prompt_completion = "prompt-completion"
    openai = "openai"
    llamafactory_v1 = "llamafactory-v1"
    map = "map"


class KtoTarget(StrEnum):
    dpo = "dpo"
    sft = "sft"


class ImagesMode(StrEnum):
    refuse = "refuse"
    skip = "skip"


class InputFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    tsv = "tsv"


def convert(
    ctx: typer.Context,
    input_file: Annotated[str, typer.Argument(metavar="INPUT", help="JSONL, JSON, CSV/TSV file, or - for stdin.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output JSONL (the training file with --split).")],
    preset: Annotated[PresetName | None, typer.Option(help="Source format (default: detected).")] = None,
    input_format: Annotated[
        InputFormat | None, typer.Option(help="Input syntax (default: from name and content).")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System prompt for records without one.")] = None,
    system_replace: Annotated[
        list[str] | None, typer.Option(help="OLD=NEW: rewrite part of every system prompt (repeatable).")
    ] = None,
    field_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="ROLE=FIELD for raw data (roles: system, user, assistant, reasoning), e.g. --map user=question "
            "--map assistant=answer; a dotted path reaches into objects and lists (answers.0); a template joins "
            "fields: --map user='{premise}\\n\\n{hypothesis}'. A list of strings is joined one per line.",
        ),
    ] = None,
    kto_to: Annotated[
        KtoTarget | None,
        typer.Option(
            help="Binary-feedback (KTO) data, refused without it: dpo pairs each prompt's desirable and undesirable "
            "answers into preference records, sft keeps only the desirable answers."
        ),
    ] = None,
    images: Annotated[
        ImagesMode,
        typer.Option(help="A record whose image file is missing: refuse it (exit 1), or skip it (counted)."),
    ] = ImagesMode.refuse,
    image_dir: Annotated[
        Path | None,
        typer.Option(help="Folder that image paths are relative to (default: the input file's folder)."),
    ] = None,
    allow_empty_prompt: Annotated[
        bool, typer.Option(help="prompt-completion: write a record with an empty prompt as an assistant-only example.")
    ] = False,
    separator: Annotated[str | None, typer.Option(help="prompt-completion: separator to strip from prompts.")] = None,
    stop: Annotated[str | None, typer.Option(help="prompt-completion: stop sequence to strip.")] = None,
    split: Annotated[float | None, typer.Option(help="Fraction to hold out as a validation file.")] = None,
    validation_output: Annotated[
        Path | None, typer.Option(help="Where --split writes validation (default OUTPUT stem + .validation.jsonl).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --shuffle and --split.")] = 0,
    shuffle: Annotated[bool, typer.Option(help="Shuffle the records.")] = False,
    dedup: Annotated[bool, typer.Option(help="Drop exact duplicate records.")] = False,
    skip_invalid: Annotated[bool, typer.Option(help="Exit 0 even when some records were skipped.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Convert a raw dataset into OpenAI's chat (or DPO) JSONL, reporting every record it can't convert."""
    from ftcli.data.convert.pipeline import ConvertOptions, convert_file
    from ftcli.data.convert.presets import PresetOptions
    from ftcli.data.convert.sources import read_text

    if input_file != "-" and image_dir is None:
        image_dir = Path(input_file).parent
    options = ConvertOptions(
        preset=preset.value if preset else None,
        input_format=input_format.value if input_format else None,
        preset_options=PresetOptions(
            system=system,
            system_replace=key_values(system_replace, "--system-replace"),
            field_map=_field_map(field_map),
            separator=separator,
            stop=stop,
            allow_empty_prompt=allow_empty_prompt,
            image_root=image_dir,
        ),
        kto_to=kto_to.value if kto_to else None,
        images=images.value,
        dedup=dedup,
        shuffle=shuffle,
        split=split,
        seed=seed,
        force=force,
    )
    if input_file == "-":
        text, inputs, name = sys.stdin.buffer.read().decode("utf-8", errors="strict"), [], "<stdin>"
    else:
        text, inputs, name = read_text(Path(input_file)), [Path(input_file)], input_file
    if split is not None and validation_output is None:
        validation_output = output.with_name(f"{output.name.removesuffix('.jsonl')}.validation.jsonl")
    result = convert_file(
        text,
        name=name,
        output=output,
        validation_output=validation_output if split else None,
        inputs=inputs,
        options=options,
    )
    app = app_context(ctx)
    emit(app, result)  # with --json the whole result, skipped records included; else the lines below on stderr
    if not app.json:
        _report(result, name)
    if result.skipped and not skip_invalid:
        raise typer.Exit(1)


def _field_map(values: list[str] | None) -> dict[str, str]:
    """--map ROLE=FIELD|TEMPLATE, each role once, each template well formed: a usage error otherwise."""
    from ftcli.data.convert.presets import MAP_ROLES, parse_map

    mapped: dict[str, str] = {}
    for role, spec in key_values(values, "--map"):
        if role not in MAP_ROLES:
            raise UsageError(f"--map {role}=…: the roles are {', '.join(MAP_ROLES)}")
        if role in mapped:
            raise UsageError(
                f"--map {role} is given twice ({mapped[role]!r} and {spec!r}); to put several fields in one message, "
                f"use a template: --map {role}='{{first}}\\n\\n{{second}}'"
            )
        try:
            parse_map(spec)
        except ValueError as exc:
            raise UsageError(f"--map {role}={spec!r}: {exc}") from None
        mapped[role] = spec
    return mapped


def _report(result: ConvertResult, name: str) -> None:
    from rich.markup import escape

    console = stderr()
    how = "detected" if result.detected else "preset"
    console.print(f"{how}: [bold]{result.preset}[/]", highlight=False)
    for skipped in result.skipped:
        console.print(f"[yellow]skipped[/] {escape(f'{name}: {skipped.location}: {skipped.reason}')}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]{note.code}[/] {escape(note.message)}", highlight=False)
    if result.ignored_keys:
        keys = ", ".join(f"{key} ({count})" for key, count in result.ignored_keys.items())
        console.print(f"not part of the conversation, left out: {keys}", markup=False, highlight=False)
    summary = f"wrote {result.written} records to {result.outputs[0]}"
    if len(result.outputs) > 1:
        summary += f" and {result.validation_written} to {result.outputs[1]}"
    if result.duplicates_dropped:
        summary += f"; dropped {result.duplicates_dropped} duplicates"
    for why, count in result.dropped.items():
        summary += f"; dropped {count} {why}"
    if result.skipped:
        summary += f"; skipped {len(result.skipped)} of {result.records}"
    console.print(summary, highlight=False)
