"""The root Typer app: global options, command wiring, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer._click.core import Context
from typer.core import TyperGroup

from ftcli import __version__
from ftcli.cli import check, convert, rules
from ftcli.cli.output import print_error
from ftcli.data.errors import DataError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class FtcliGroup(TyperGroup):
    """Service and data errors become a message on stderr and a documented exit code; never a traceback."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except DataError as exc:
            print_error(exc.message, hint=exc.hint)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=FtcliGroup,
    name="ftcli",
    help="Fine-tune chat models on your own data: convert, check, upload, train, status, chat.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"ftcli {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ftcli: the whole fine-tuning loop, on OpenAI's protocol and on your own machine."""


app.command("convert")(convert.convert)
app.command("check")(check.check)
app.command("rules")(rules.rules)


def main() -> None:
    app()
