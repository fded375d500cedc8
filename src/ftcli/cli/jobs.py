"""`ftcli status`, `cancel`, `pause`, `resume`: look at and steer fine-tuning jobs.

Exit codes of `status --wait` (and `train --wait`): 0 succeeded, 1 failed, 3 cancelled; Ctrl-C detaches
(exit 130) without cancelling the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import AppContext, app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import confirm, stderr, warn_shutdown
from ftcli.cli.progress import follow
from ftcli.data.local_server import key_for
from ftcli.service.errors import UsageError
from ftcli.service.manifest import estimated_tokens

JobArg = Annotated[str, typer.Argument(help="Job id.")]


def status(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(metavar="JOB", help="Job id; without it, recent jobs.")] = None,
    events: Annotated[bool, typer.Option(help="Show the job's events.")] = False,
    checkpoints: Annotated[bool, typer.Option(help="Show the job's checkpoints.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", "--follow", help="Follow until the job ends; the exit code is its final state.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Jobs to list.")] = 20,
    results: Annotated[Path | None, typer.Option(help="Save the job's result CSV (decoded) to this path.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw the loss curve to a PNG (needs ftcli\\[plot]).")] = None,
    web: Annotated[bool, typer.Option("--web", help="Print the job's page on `ftcli serve`'s web app.")] = False,
) -> None:
    """Recent jobs, or one job's status, model, trained tokens, hyperparameters and error in plain words.
    With --json: the job (a list of jobs without JOB), plus "events" and "checkpoints" when asked for."""
    from rich.console import Group

    from ftcli.data.convert.writer import write_atomic
    from ftcli.render import jobs as view
    from ftcli.service import results as results_module

    app = app_context(ctx)
    if web:
        url = web_url(app.settings().base_url, job_id)
        emit(app, {"url": url}, lambda: url)
        return
    backend = app.backend()
    if job_id is None:
        listed = backend.list_jobs(limit=limit)
        emit(app, listed, lambda: view.jobs_table(listed))
        return
    if wait:
        raise typer.Exit(follow(app, job_id))
    job = backend.get_job(job_id)
    warn_shutdown(job.fine_tuned_model or job.model)
    listed_events = backend.list_events(job_id) if events or plot or not app.json else []
    points = results_module.loss_from_events(listed_events)
    if results is not None or (plot is not None and not points):
        downloaded = results_module.download_results(backend.chat_client(), job)
        if results is not None:
            if not downloaded:
                raise UsageError(f"{job_id} has no result files yet")
            write_atomic(results, [downloaded[0][1]])
            stderr().print(f"saved {downloaded[0][0]} to {results}", highlight=False, markup=False)
        if not points and downloaded:
            points = results_module.loss_from_csv(downloaded[0][1])
    if plot is not None:
        if not points:
            raise UsageError(f"{job_id} has reported no loss yet")
        _plot(points, plot, title=f"{job.id} ({job.model})")
    found = backend.list_checkpoints(job_id) if checkpoints else []
    document: dict[str, Any] = job.model_dump(mode="json")
    if events:
        document["events"] = [event.model_dump(mode="json") for event in listed_events]
    if checkpoints:
        document["checkpoints"] = [checkpoint.model_dump(mode="json") for checkpoint in found]

    def rich_view() -> Any:
        parts = [
            view.job_details(job, estimate_tokens=estimated_tokens(job.id)),
            view.progress_curve(job, points),  # the reward's, for a reinforcement job
        ]
        parts += [view.events_table(listed_events)] if events else []
        parts += [view.checkpoints_table(found)] if checkpoints else []
        return Group(*parts)

    emit(app, document, rich_view)


def _plot(points: list[Any], output: Path, *, title: str) -> None:
    try:
        from ftcli.render.plot import plot_loss
    except ImportError:
        raise UsageError("--plot needs matplotlib", hint="pip install 'ftcli[plot]'") from None
    try:
        plot_loss(points, output, title=title)
    except ImportError:
        raise UsageError("--plot needs matplotlib", hint="pip install 'ftcli[plot]'") from None
    stderr().print(f"loss curve saved to {output}", highlight=False, markup=False)


def web_url(base_url: str | None, job_id: str | None) -> str:
    """The page of a job (or the jobs list) on an `ftcli serve` backend: its web app lives beside /v1."""
    if not base_url:
        raise UsageError("--web needs a local backend", hint="ftcli --base-url http://127.0.0.1:8765/v1 status --web")
    root = base_url.rstrip("/").removesuffix("/v1")
    page = f"{root}/#/jobs/{job_id}" if job_id else f"{root}/#/jobs"
    key = key_for(base_url)  # only a per-start key of this user's own `ftcli serve`, never a key the user gave
    return f"{page}&token={key}" if key else page


def cancel(
    ctx: typer.Context,
    job_id: JobArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Don't ask.")] = False,
) -> None:
    """Cancel a job (asks first unless --yes)."""
    confirm(f"Cancel {job_id}?", yes=yes, hint="pass --yes to cancel without a terminal")
    app = app_context(ctx)
    _show(app, app.backend().cancel_job(job_id))


def pause(ctx: typer.Context, job_id: JobArg) -> None:
    """Pause a running job (resume it later)."""
    app = app_context(ctx)
    _show(app, app.backend().pause_job(job_id))


def resume(ctx: typer.Context, job_id: JobArg) -> None:
    """Resume a paused job."""
    app = app_context(ctx)
    _show(app, app.backend().resume_job(job_id))


def _show(app: AppContext, job: Any) -> None:
    emit(app, job, lambda: f"{job.id} {job.status}")
