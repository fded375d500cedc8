"""Progress the user watches, shared by several commands: a byte bar while a file uploads (`upload`, `train`) and
a job followed live until it ends (`status --wait`, `train --wait`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ftcli.cli.context import AppContext
from ftcli.cli.emit import emit
from ftcli.cli.output import print_error, stderr
from ftcli.service.files import ProgressCallback
from ftcli.service.manifest import estimated_tokens, record_job_state
from ftcli.service.training import UploadProgress


def upload_bar(app: AppContext) -> UploadProgress:
    """A byte progress bar on stderr for each file uploaded (none with --json)."""

    @contextmanager
    def bar(path: Path) -> Iterator[ProgressCallback | None]:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=stderr(), transient=True, disable=app.json) as progress:
            task = progress.add_task(path.name, total=path.stat().st_size)
            yield lambda sent: progress.advance(task, sent)

    return bar


def follow(app: AppContext, job_id: str) -> int:
    """A live view of a job until it ends; returns the exit code of its final state."""
    from ftcli.render import jobs as view
    from ftcli.service import jobs

    console = stderr()
    last = None
    shown = ""
    try:
        # A server on this machine is polled every second or two; a remote API every 5 s, backing off to 30 s.
        local = app.settings().on_this_machine()
        interval, ceiling = (1.0, 2.0) if local else (5.0, 30.0)
        for progress in jobs.wait_for_job(app.backend(), job_id, interval=interval, max_interval=ceiling):
            last = progress
            for event in progress.new_events:
                if event.type != "metrics" and not app.json:
                    console.print(f"{view.when(event.created_at)}  {event.message}", highlight=False, markup=False)
            if progress.step is not None and not app.json:
                eta = view.when(progress.job.estimated_finish) if progress.job.estimated_finish else "-"
                loss = f"{progress.train_loss:.4f}" if progress.train_loss is not None else "-"
                line = f"{progress.status} · step {progress.step} · loss {loss} · ETA {eta}"
                if line != shown:  # a poll that brought nothing new prints nothing (logs of CI runs stay short)
                    console.print(f"[dim]{line}[/]", highlight=False)
                    shown = line
    except KeyboardInterrupt:
        again = f"ftcli status {job_id} --wait"
        if app.json:  # stdout stays empty (no document); stderr gets the error object scripts parse
            print_error(f"interrupted: stopped following {job_id}; the job goes on", hint=again, as_json=True)
        else:
            console.print(f"detached; the job goes on. Re-attach with `{again}`", highlight=False, markup=False)
        return 130
    assert last is not None
    record_job_state(last.job)  # the run manifest, if this job has one, learns how it ended
    emit(app, last.job, lambda: view.job_details(last.job, estimate_tokens=estimated_tokens(job_id)))
    return jobs.EXIT_CODES.get(last.status, 1)
