"""Views of fine-tuning jobs: the recent-jobs table, one job's details, events, checkpoints, a loss sparkline (a
reward sparkline for reinforcement jobs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ftcli.render.terminal import WholeTable

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "running": "cyan",
    "paused": "magenta",
    "queued": "blue",
    "validating_files": "blue",
}
_SPARK = "▁▂▃▄▅▆▇█"

# Plain-word explanations of the error codes OpenAI's fine-tuning reports.
_ERROR_HELP = {
    "invalid_file_format": "the training file is not valid chat JSONL; `ftcli check FILE` shows where",
    "invalid_training_file": "the training file was rejected; `ftcli check FILE` shows where",
    "exceeded_quota": "the account is out of quota or credit",
    "insufficient_examples": "the file has too few examples (at least 10)",
    "file_too_large": "the file is over the size limit",
    "moderation": "the data failed the provider's safety checks",
}


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def jobs_table(jobs: Sequence[Any]) -> Table:
    tokens = [f"{job.trained_tokens:,}" if job.trained_tokens else "-" for job in jobs]
    table = WholeTable(show_edge=False)
    table.add_whole_column("job", [job.id for job in jobs])
    table.add_whole_column("status", [str(job.status) for job in jobs])
    table.add_whole_column("model", [job.model for job in jobs])
    table.add_whole_column("fine-tuned model", [job.fine_tuned_model or "-" for job in jobs])
    table.add_whole_column("trained tokens", tokens, justify="right")
    table.add_column("created")  # the one column that wraps
    for job, trained in zip(jobs, tokens, strict=True):
        table.add_row(
            Text(job.id),
            status_text(str(job.status)),
            Text(job.model),
            Text(job.fine_tuned_model or "-"),
            trained,
            when(job.created_at),
        )
    return table


def job_details(job: Any, *, estimate_tokens: int | None = None) -> RenderableType:
    names = [job.id, job.model, job.fine_tuned_model or "-", job.training_file, job.validation_file or "-"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(min_width=max(cell_len(name) for name in names))  # ids and model names stay on one line
    table.add_row("job", Text(job.id))
    table.add_row("status", status_text(str(job.status)))
    parent = lineage(job)
    table.add_row("base model", Text(job.model if parent is None else str(_field(job.parent, "base") or job.model)))
    if parent is not None:
        table.add_row("continues", parent)
    table.add_row("fine-tuned model", Text(job.fine_tuned_model or "-"))
    trained = f"{job.trained_tokens:,}" if job.trained_tokens else "-"
    if estimate_tokens:
        trained += f" (estimated {estimate_tokens:,})"
    table.add_row("trained tokens", trained)
    table.add_row("training file", Text(job.training_file))
    table.add_row("validation file", Text(job.validation_file or "-"))
    table.add_row("hyperparameters", Text(_hyperparameters(job)))
    table.add_row("created", when(job.created_at))
    table.add_row("finished", when(job.finished_at))
    if getattr(job, "estimated_finish", None):
        table.add_row("estimated finish", when(job.estimated_finish))
    parts: list[RenderableType] = [table]
    if job.error and (job.error.message or job.error.code):
        parts.append(Text(f"error: {explain_error(job.error.code, job.error.message)}", style="bold red"))
    return Group(*parts)


def lineage(job: Any) -> Text | None:
    """parent → child, for a job that continues a fine-tuned model or checkpoint (`parent`: ftcli serve's and
    Together's jobs say what they started from); None for a job of a base."""
    parent = getattr(job, "parent", None)
    if not parent:
        return None
    named = _field(parent, "model") or _field(parent, "checkpoint") or "?"
    made_by = [str(part) for part in (_field(parent, "job_id"), _field(parent, "checkpoint")) if part]
    made_by = [part for part in made_by if part != named]
    origin = f"{named} ({', '.join(made_by)})" if made_by else str(named)
    return Text(f"{origin} → {job.id}")


def _field(value: Any, name: str) -> Any:
    """A field of an object the SDK kept as it came (a dict) or parsed."""
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def explain_error(code: str | None, message: str | None) -> str:
    plain = _ERROR_HELP.get(code or "")
    text = message or code or "unknown error"
    return f"{text} ({plain})" if plain else text


def _hyperparameters(job: Any) -> str:
    method = getattr(job, "method", None)
    values: dict[str, Any] = {}
    if method is not None:
        kind = getattr(method, "type", None)
        section = getattr(method, kind, None) if isinstance(kind, str) else None
        hyper = getattr(section, "hyperparameters", None)
        if hyper is not None:
            values = {k: v for k, v in hyper.model_dump().items() if v is not None}
    if not values and getattr(job, "hyperparameters", None) is not None:
        values = {k: v for k, v in job.hyperparameters.model_dump().items() if v is not None}
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


def events_table(events: Sequence[Any]) -> Table:
    table = Table(show_edge=False)
    table.add_column("time", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("message")
    for event in events:
        table.add_row(when(event.created_at), Text(event.level), Text(event.message))
    return table


def checkpoints_table(checkpoints: Sequence[Any]) -> Table:
    table = WholeTable(show_edge=False)
    table.add_column("step", justify="right")
    table.add_whole_column("checkpoint model", [cp.fine_tuned_model_checkpoint for cp in checkpoints])
    table.add_column("train loss", justify="right")
    table.add_column("valid loss", justify="right")
    for cp in checkpoints:
        metrics = cp.metrics
        table.add_row(
            str(cp.step_number),
            Text(cp.fine_tuned_model_checkpoint),
            _num(metrics.train_loss),
            _num(metrics.valid_loss),
        )
    return table


def loss_curve(losses: Sequence[float], *, width: int = 60) -> Text:
    """A one-line sparkline of the training loss (down is good)."""
    return _sparkline("loss", losses, width=width)


def reward_curve(rewards: Sequence[float], *, width: int = 60) -> Text:
    """A one-line sparkline of a reinforcement job's mean reward per step (up is good)."""
    return _sparkline("reward", rewards, width=width)


def progress_curve(job: Any, points: Sequence[Any], *, width: int = 60) -> Text:
    """A reinforcement job's reward curve, any other job's loss curve (`points`: service/results.LossPoint)."""
    if getattr(getattr(job, "method", None), "type", None) == "reinforcement":
        return reward_curve([p.train_reward_mean for p in points if p.train_reward_mean is not None], width=width)
    return loss_curve([p.train_loss for p in points if p.train_loss is not None], width=width)


def _sparkline(name: str, values: Sequence[float], *, width: int) -> Text:
    if not values:
        return Text(f"no {name} reported yet", style="dim")
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    line = "".join(_SPARK[min(len(_SPARK) - 1, int((v - low) / span * (len(_SPARK) - 1)))] for v in values)
    return Text.assemble((f"{name} ", "bold"), (line, "cyan"), f"  {values[0]:.3f} → {values[-1]:.3f}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
