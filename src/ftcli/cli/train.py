"""`ftcli train`: check and upload a local file if needed, show the estimate, confirm, create the job once (the
operations are service/training.py's; this module parses options and talks to the user)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import confirm, stderr, warn_shutdown
from ftcli.cli.params import json_file, key_json, key_values
from ftcli.cli.progress import follow, upload_bar
from ftcli.data import hyperparameters

if TYPE_CHECKING:
    from ftcli.service.training import PreparedJob


def train(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Base model to fine-tune, or a fine-tuned model (ft:…) to train further: on ftcli serve the new job "
            "trains that model's adapter on (the first loss is the model's last), on OpenAI it is sent as is, on "
            "Together it becomes from_checkpoint.",
        ),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", help="Training file: an uploaded file id or a local path.")
    ] = None,
    validation_file: Annotated[str | None, typer.Option(help="Validation file id or path.")] = None,
    from_checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Train a checkpoint of an earlier job further: OpenAI and ftcli serve name it by its model "
            "(ft:…:ckpt-step-N, `ftcli status JOB --checkpoints`), Together by JOB_ID or OUTPUT_MODEL_NAME, either "
            "with :STEP. --model may be left out (the checkpoint's base); given, it must be that base.",
        ),
    ] = None,
    from_export: Annotated[
        Path | None,
        typer.Option(
            help="Re-train an exported job (OUT/<job-id> of `ftcli export`): its data, method and hyperparameters."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Profile to train on (like the global --profile).")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="sft, dpo or reinforcement (default: reinforcement with --grader-file, else the training file's "
            "records decide, as `check` decides; an uploaded file's are read back from the backend, and where it "
            "won't give them back, --method is asked for; or the exported job's)."
        ),
    ] = None,
    grader_file: Annotated[
        Path | None,
        typer.Option(
            help="Reinforcement fine-tuning (RFT): the grader that scores each sampled answer, as OpenAI's grader JSON "
            "(string_check, text_similarity, score_model, label_model, python, multi). The training file holds "
            "prompts and the fields the grader reads ({{item.FIELD}}); both are checked before the upload."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: the backend's rule).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr_multiplier: Annotated[float | None, typer.Option(min=0.0)] = None,
    beta: Annotated[float | None, typer.Option(help="DPO beta.")] = None,
    suffix: Annotated[str | None, typer.Option(help="Up to 64 characters in the fine-tuned model's name.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends; exit code = its final state.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Don't ask to confirm the cost (needed without a TTY).")
    ] = False,
    hyperparameter: Annotated[
        list[str] | None,
        typer.Option(
            "--hyperparameter",
            "-H",
            help="A backend's own hyperparameter as key=value (JSON value), repeatable; refused before anything is "
            f"sent if the backend doesn't take it. ftcli serve: {hyperparameters.help_text()}; each also auto. "
            "Together: its own fields (lora_rank, train_on_inputs, learning_rate, train_vision, …). OpenAI and "
            "Azure: none.",
        ),
    ] = None,
) -> None:
    """Start a fine-tuning job (prints its id). Exit codes with --wait: 0 succeeded, 1 failed, 3 cancelled.
    With --json: the created job, or with --wait the finished one."""
    from ftcli.service import training
    from ftcli.service.jobs import JobRequest

    app = app_context(ctx)
    app.use_backend(backend)
    request = JobRequest(
        model=model or "",
        from_checkpoint=from_checkpoint,
        training_file=file or "",
        validation_file=validation_file,
        method=method or ("reinforcement" if grader_file is not None else None),
        n_epochs=epochs,
        batch_size=batch_size,
        learning_rate_multiplier=lr_multiplier,
        beta=beta,
        suffix=suffix,
        seed=seed,
        metadata=dict(key_values(metadata, "--metadata")),
        extra_hyperparameters=dict(key_json(h, "--hyperparameter") for h in hyperparameter or ()),
        grader=json_file(grader_file, "--grader-file") if grader_file is not None else None,
    )
    backend_ = app.backend()
    prepared = training.prepare(
        backend_,
        request,
        from_export=from_export,
        ledger=app.ledger(),
        progress=upload_bar(app),
        ftcli_server=training.is_ftcli_server(app.settings()),
    )
    warn_shutdown(prepared.request.model)
    _confirm(prepared, yes=yes)
    job = training.start(backend_, prepared, described=app.settings().describe())
    if wait:
        stderr().print(f"created {job.id} ({job.status}); following it", highlight=False)
        raise typer.Exit(follow(app, job.id))
    stderr().print(f"created {job.id} ({job.status}); follow it with `ftcli status {job.id} --wait`", highlight=False)
    emit(app, job, lambda: job.id)


def _confirm(prepared: PreparedJob, *, yes: bool) -> None:
    report, quote = prepared.report, prepared.quote
    if report is not None:
        est = report.estimate
        cost = f"${est.cost_usd:,.2f}" if est.cost_usd is not None else "unknown"
        if quote is not None:
            cost = f"${quote.total_usd:,.2f} (the backend's quote)"
        stderr().print(
            f"{report.examples:,} example{'s' * (report.examples != 1)}, {est.epochs} epoch{'s' * (est.epochs != 1)}, "
            f"~{est.billed_tokens:,} billed tokens; "
            f"estimated cost {cost}",
            highlight=False,
        )
    elif quote is not None:
        stderr().print(f"estimated cost ${quote.total_usd:,.2f} (the backend's quote)", highlight=False)
    if quote is not None and not quote.allowed:
        stderr().print("[yellow]warning:[/] the backend says this account can't afford the job", highlight=False)
    confirm("Start the fine-tuning job?", yes=yes, hint="pass --yes to start the job without a terminal")
