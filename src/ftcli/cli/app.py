"""The root Typer app: global options, command wiring, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer._click.core import Context
from typer.core import TyperGroup

from ftcli import __version__
from ftcli.cli import chat, check, convert, export, jobs, models, profile, rules, serve, train, upload
from ftcli.cli.context import AppContext
from ftcli.cli.output import print_error
from ftcli.data.errors import DataError
from ftcli.service.errors import FtcliError, redact

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class FtcliGroup(TyperGroup):
    """Service and data errors become a message on stderr and a documented exit code; never a traceback."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DataError, FtcliError) as exc:
            code = exc.exit_code if isinstance(exc, FtcliError) else EXIT_USAGE
            print_error(redact(exc.message), hint=exc.hint, as_json=_json_mode(ctx))
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            print_error("interrupted", as_json=_json_mode(ctx))
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _json_mode(ctx: Context) -> bool:
    return isinstance(ctx.obj, AppContext) and ctx.obj.json


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
    ctx: typer.Context,
    profile_name: Annotated[
        str | None,
        typer.Option("--profile", "-p", envvar="FTCLI_PROFILE", help="Connection profile (see `ftcli profile`)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Any OpenAI-compatible base URL, e.g. http://127.0.0.1:8765/v1.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (errors too, on stderr).")] = False,
    debug: Annotated[bool, typer.Option(help="Log HTTP requests (keys are never logged).")] = False,
    _version_flag: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ftcli: the whole fine-tuning loop, on OpenAI's protocol and on your own machine."""
    ctx.obj = AppContext(profile=profile_name, base_url=base_url, json=as_json, debug=debug)
    ctx.call_on_close(ctx.obj.close)
    if debug:
        _debug_logging(ctx.obj)


def _debug_logging(app_ctx: AppContext) -> None:
    """Log the SDK's and the HTTP client's requests to stderr, with anything key-like removed."""
    import logging

    class Redact(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            key = app_ctx._settings.api_key if app_ctx._settings else None
            record.msg = redact(record.getMessage(), key)
            record.args = None
            return True

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redact())
    handler.setFormatter(logging.Formatter("debug %(name)s: %(message)s"))
    for name in ("openai", "httpx2", "ftcli"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)


app.command("convert")(convert.convert)
app.command("check")(check.check)
app.command("rules")(rules.rules)
app.command("upload")(upload.upload)
app.command("train")(train.train)
app.command("status")(jobs.status)
app.command("cancel")(jobs.cancel)
app.command("pause")(jobs.pause)
app.command("resume")(jobs.resume)
app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("export")(export.export)
app.command("serve")(serve.serve)
app.add_typer(profile.app, name="profile", help="Named connection profiles (OpenAI, Azure, local, any base URL).")


def main() -> None:
    app()
