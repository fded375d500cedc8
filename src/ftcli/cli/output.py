"""Consoles and error printing shared by commands: data to stdout, messages and progress to stderr."""

from __future__ import annotations

from functools import cache

from rich.console import Console


@cache
def stdout() -> Console:
    return Console(soft_wrap=True)


@cache
def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def print_error(message: str, *, hint: str | None = None) -> None:
    console = stderr()
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    if hint:
        console.print(f"[dim]hint:[/] {hint}", highlight=False)
