"""Consoles and error printing shared by commands: data to stdout, messages and progress to stderr."""

from __future__ import annotations

import json
import sys
from functools import cache

import typer
from rich.text import Text

from ftcli.render.terminal import SafeConsole
from ftcli.service.errors import UsageError, redact


@cache
def stdout() -> SafeConsole:
    return SafeConsole(soft_wrap=True)


@cache
def stderr() -> SafeConsole:
    return SafeConsole(stderr=True, soft_wrap=True)


def print_error(message: str, *, hint: str | None = None, as_json: bool = False) -> None:
    """An error on stderr (a JSON document with --json), with every key ftcli knows removed: a key learnt after the
    error was made (an echo in a server's answer, say) is caught here too."""
    message, hint = redact(message), (redact(hint) if hint else None)
    if as_json:
        sys.stderr.write(json.dumps({"error": {"message": message, "hint": hint}}) + "\n")
        return
    console = stderr()
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False)
    if hint:
        console.print(Text.assemble(("hint: ", "dim"), hint), highlight=False)


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, *, yes: bool, hint: str) -> None:
    """Ask before something that costs or can't be undone. The question goes to stderr (stdout is for the result);
    without a terminal nobody can answer, so it refuses unless `--yes` was given; "no" exits 1."""
    if yes:
        return
    if not stdin_is_terminal():
        raise UsageError("not confirmed", hint=hint)
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(1)


def warn_shutdown(model: str | None) -> None:
    """A warning on stderr when `model` (or the base of a fine-tune) has a shutdown date in ftcli's catalog."""
    if not model:
        return
    from ftcli.data import clock
    from ftcli.data.catalog import load_catalog

    info = load_catalog().lookup(model)
    if info.known and info.shutdown_date is not None:
        days = clock.days_until(info.shutdown_date)
        word = "was shut down" if days <= 0 else f"stops serving in {days} days"
        subject = model if model.startswith("ft:") else info.name
        stderr().print(
            f"[yellow]warning:[/] {subject} {word} ({info.shutdown_date}); `ftcli export` brings your jobs out",
            highlight=False,
        )
