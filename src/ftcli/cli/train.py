"""`ftcli train`: check and upload a local file if needed, show the estimate, confirm, create the job once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ftcli.cli.context import AppContext, app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import confirm, stderr, warn_shutdown
from ftcli.cli.params import key_json, key_values
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from ftcli.data.report import Report


def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model to fine-tune.")],
    file: Annotated[
        str | None, typer.Option("--file", help="Training file: an uploaded file id or a local path.")
    ] = None,
    validation_file: Annotated[str | None, typer.Option(help="Validation file id or path.")] = None,
    from_export: Annotated[
        Path | None,
        typer.Option(
            help="Re-train an exported job (OUT/<job-id> of `ftcli export`): its data, method and hyperparameters."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Profile to train on (like the global --profile).")] = None,
    method: Annotated[str | None, typer.Option(help="sft or dpo (default: sft, or the exported job's).")] = None,
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
            help="A backend's own hyperparameter as key=value (JSON value), repeatable; ftcli serve takes lora_rank, "
            "lora_alpha, lora_dropout, packing and stop_at_loss.",
        ),
    ] = None,
) -> None:
    """Start a fine-tuning job (prints its id). Exit codes with --wait: 0 succeeded, 1 failed, 3 cancelled.
    With --json: the created job, or with --wait the finished one."""
    from ftcli.service.jobs import JobRequest, create_job
    from ftcli.service.manifest import RunManifest

    app = app_context(ctx)
    app.use_backend(backend)
    pairs = dict(key_values(metadata, "--metadata"))
    exported = None
    if from_export is not None:
        from ftcli.service.export import load_export

        exported = load_export(from_export)
        carried = exported.carried_parameters(app.settings().kind)
        file = file or str(exported.training_file)
        if validation_file is None and exported.validation_file is not None:
            validation_file = str(exported.validation_file)
        method = method or exported.method
        epochs = epochs if epochs is not None else carried.get("n_epochs")
        batch_size = batch_size if batch_size is not None else carried.get("batch_size")
        lr_multiplier = lr_multiplier if lr_multiplier is not None else carried.get("learning_rate_multiplier")
        beta = beta if beta is not None else carried.get("beta")
        suffix = suffix or exported.job.get("user_provided_suffix")
        seed = seed if seed is not None else exported.job.get("seed")
        pairs.setdefault("ftcli_retrain_of", str(exported.job["id"])[:512])
    if file is None:
        raise UsageError("--file is required", hint="or --from-export OUT/<job-id> to re-train an exported job")
    method = method or "sft"
    training_id, report, sha = _resolve_file(app, file, model=model, method=method, epochs=epochs)
    validation_id = (
        _resolve_file(app, validation_file, model=model, method=method, epochs=epochs)[0] if validation_file else None
    )
    request = JobRequest(
        model=model,
        training_file=training_id,
        validation_file=validation_id,
        method=method,
        n_epochs=epochs,
        batch_size=batch_size,
        learning_rate_multiplier=lr_multiplier,
        beta=beta,
        suffix=suffix,
        seed=seed,
        metadata=pairs,
        extra_hyperparameters=dict(key_json(h, "--hyperparameter") for h in hyperparameter or ()),
    )
    request.validate()
    warn_shutdown(model)
    _confirm(report, yes=yes)
    job = create_job(app.client(), request)
    RunManifest(
        job_id=job.id,
        backend=app.settings().describe(),
        model=model,
        method=method,
        training_file={"path": file if sha else None, "sha256": sha, "file_id": training_id},
        validation_file={"file_id": validation_id} if validation_id else None,
        parameters=request.create_params(tag="")["method"],
        check={"examples": report.examples, "errors": report.errors, "warnings": report.warnings} if report else None,
        estimate=report.estimate.to_dict() if report else None,
        request_tag=(job.metadata or {}).get("ftcli_request_id"),
        status=str(job.status),
        retrain_of=exported.link() if exported else None,
    ).save()
    if wait:
        from ftcli.cli.jobs import follow

        stderr().print(f"created {job.id} ({job.status}); following it", highlight=False)
        raise typer.Exit(follow(app, job.id))
    stderr().print(f"created {job.id} ({job.status}); follow it with `ftcli status {job.id} --wait`", highlight=False)
    emit(app, job, lambda: job.id)


def _resolve_file(
    app: AppContext, value: str, *, model: str, method: str, epochs: int | None
) -> tuple[str, Report | None, str | None]:
    """A file id is used as is; a local path is checked (errors refuse), then uploaded."""
    path = Path(value)
    if not path.exists():
        if value.startswith("file-") or "/" not in value and not value.endswith(".jsonl"):
            return value, None, None
        raise UsageError(f"{value}: no such file")
    from ftcli.cli.upload import send_file
    from ftcli.service.files import check_before_upload

    report = check_before_upload(path, model=model, method=method, epochs=epochs)
    result = send_file(app, path)
    return result.file.id, report, result.sha256


def _confirm(report: Report | None, *, yes: bool) -> None:
    if report is not None:
        est = report.estimate
        cost = f"${est.cost_usd:,.2f}" if est.cost_usd is not None else "unknown"
        stderr().print(
            f"{report.examples:,} examples, {est.epochs} epochs, ~{est.billed_tokens:,} billed tokens; "
            f"estimated cost {cost}",
            highlight=False,
        )
    confirm("Start the fine-tuning job?", yes=yes, hint="pass --yes to start the job without a terminal")
