"""`ftcli export`: bring fine-tuning jobs (job, events, checkpoints, data files, result CSVs) out of a backend, or
record a model's golden answers before it stops serving. Rerunning an export resumes it; nothing is deleted
remotely."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ftcli.cli.context import AppContext, app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr, warn_shutdown
from ftcli.cli.params import size
from ftcli.service.errors import UsageError
from ftcli.service.weights_archive import DEFAULT_MAX_MEMBERS, WeightsLimits


def export(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder of the export (with --golden: the answers file, golden.jsonl)."),
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", help="Only this job (repeatable); default: all.")] = None,
    golden: Annotated[
        Path | None, typer.Option(help="Record --model's answers to these prompts (chat JSONL) instead.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model whose answers --golden records.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature for --golden.")] = 0.0,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Answer length limit for --golden.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed for --golden (if supported).")] = None,
    weights: Annotated[
        Literal["adapter", "merged"] | None,
        typer.Option(
            help="Also download each finished job's model, where the backend gives it out (Together): adapter or "
            "merged. Resumes a cut download; unpacked for `ftcli serve --model-dir`."
        ),
    ] = None,
    max_weights_bytes: Annotated[
        str,
        typer.Option(
            help="Largest model --weights may download, and unpack to: bytes, or with K, M, G or T (powers of 1024). "
            "The default fits the largest model Together fine-tunes; an archive that unpacks to more than 20 times "
            "its own size is refused whatever this says (weights barely compress)."
        ),
    ] = "1T",
    max_weights_files: Annotated[
        int, typer.Option(min=1, help="Most files and folders a --weights archive may hold.")
    ] = DEFAULT_MAX_MEMBERS,
    backend: Annotated[str | None, typer.Option(help="Profile to export from (like the global --profile).")] = None,
) -> None:
    """Export every fine-tuning job (or --job ones) to --out, with manifest.json (sizes, sha256); or --golden."""
    app = app_context(ctx)
    app.use_backend(backend)
    if golden is not None:
        if not model:
            raise UsageError("--golden needs --model", hint="ftcli export --golden prompts.jsonl --model ft:...")
        _golden(app, golden, out or Path("golden.jsonl"), model, temperature, max_tokens, seed)
        return
    if out is None:
        raise UsageError("--out is required", hint="ftcli export --out exports/")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    limits = WeightsLimits(max_bytes=size(max_weights_bytes, "--max-weights-bytes"), max_members=max_weights_files)
    _jobs(app, out, job or None, weights, limits)


def _jobs(
    app: AppContext,
    out: Path,
    job_ids: list[str] | None,
    weights: Literal["adapter", "merged"] | None,
    limits: WeightsLimits,
) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from ftcli.service.job_export import export_jobs, summarise

    steps = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=stderr(), disable=app.json) as progress:
        task = progress.add_task("exporting", total=None)
        exported = export_jobs(
            app.backend(), out, described=app.settings().describe(), job_ids=job_ids, weights=weights, limits=limits
        )
        for step in exported:
            steps.append(step)
            word = "verified" if step.verified else "fetched"
            progress.update(task, description=f"{word} {step.path} ({step.bytes:,} bytes)")
            if not app.json:
                progress.console.print(f"  {word:8} {step.path}", highlight=False)
    summary = summarise(out, steps)
    data = {"folder": str(out), "jobs": summary.jobs, "fetched": summary.fetched, "verified": summary.verified}
    emit(app, data)
    if not app.json:
        stderr().print(
            f"exported {summary.jobs} job(s) to {out}: {summary.fetched} file(s) fetched, {summary.verified} "
            f"verified (manifest: {out / 'manifest.json'})",
            highlight=False,
        )


def _golden(
    app: AppContext,
    prompts: Path,
    out: Path,
    model: str,
    temperature: float,
    max_tokens: int | None,
    seed: int | None,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ftcli.service.golden import GoldenSettings, meta_path, record_golden

    if not prompts.is_file():
        raise UsageError(f"{prompts}: no such file")
    if out.resolve() == prompts.resolve():
        raise UsageError("the answers file would overwrite the prompts", hint="choose another --out")
    warn_shutdown(model)
    settings = GoldenSettings(model, temperature=temperature, max_tokens=max_tokens, seed=seed)
    with Progress(
        TextColumn("golden answers"), BarColumn(), MofNCompleteColumn(), console=stderr(), disable=app.json
    ) as progress:
        task = progress.add_task("golden", total=None)
        for done, total in record_golden(app.client(), prompts, out, settings):
            progress.update(task, completed=done, total=total)
    emit(app, {"model": model, "answers": str(out), "meta": str(meta_path(out))})
    if not app.json:
        stderr().print(
            f"recorded {model}'s answers in {out} (settings in {meta_path(out)}); later: "
            f"ftcli chat --eval {out} --model NEW",
            highlight=False,
        )
