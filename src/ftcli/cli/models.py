"""`ftcli models`: the backend's models with their base model, owner and the day they stop serving; `ftcli models
export MODEL --out DIR`: a fine-tuned model's files, to serve with vLLM, Ollama, llama.cpp or transformers."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr

app = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, no_args_is_help=False)


@app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    fine_tuned: Annotated[bool, typer.Option("--fine-tuned", help="Only fine-tuned models (ft:...).")] = False,
    trainable: Annotated[
        bool, typer.Option("--trainable", help="The base models this backend can fine-tune, instead.")
    ] = False,
) -> None:
    """Models with base model, owner and shutdown date (the API's, else ftcli's catalog), days left highlighted.
    With --trainable: the bases the backend fine-tunes (Together: its supported list)."""
    if ctx.invoked_subcommand is not None:
        return
    if trainable:
        context = app_context(ctx)
        names = context.backend().trainable_models()
        emit(context, names, lambda: "\n".join(names))
        return
    from ftcli.data import clock
    from ftcli.render.models import models_table

    context = app_context(ctx)
    found = context.backend().list_models(fine_tuned_only=fine_tuned)  # Together's list is not OpenAI's
    today = clock.today()
    rows = [{**dataclasses.asdict(m), "days_left": m.days_left(today)} for m in found]
    emit(context, rows, lambda: models_table(found, today))


@app.command("export")
def export(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The fine-tuned model (ft:...), as `ftcli models` lists it.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write (it must not exist yet).")],
    fmt: Annotated[
        Literal["adapter", "merged", "gguf", "gguf-lora"],
        typer.Option(
            "--format",
            help="adapter: PEFT adapter + tokenizer; merged: full weights, Modelfile; gguf: one GGUF file for "
            "llama.cpp, Ollama, LM Studio, with Modelfile; gguf-lora: the adapter as a GGUF LoRA (llama.cpp --lora).",
        ),
    ] = "adapter",
    quant: Annotated[
        Literal["f16", "q8_0", "q4_k_m"] | None,
        typer.Option("--quant", help="GGUF quantization: f16 (default), q8_0, q4_k_m (gguf only)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the folder if it exists.")] = False,
) -> None:
    """Export a fine-tuned model of `ftcli serve` as files to serve elsewhere (vLLM, Ollama, llama.cpp,
    transformers). Prints the folder; with --json, the files with their sha256 and the commands that serve them."""
    from ftcli.service.model_export import export_model

    context = app_context(ctx)
    what = f"{fmt} {quant}" if quant else fmt
    with stderr().status(f"exporting {model} ({what}) …", spinner="dots") if not context.json else nullcontext():
        result = export_model(context.client(), model, out, fmt=fmt, quant=quant, force=force)

    def view() -> str:
        console = stderr()
        console.print(f"exported {model} as {what} to {result.folder}; serve it with:", highlight=False, markup=False)
        for command in result.serve:
            console.print(f"  {command}", highlight=False, soft_wrap=True, markup=False)
        return result.folder

    emit(context, result, view)
