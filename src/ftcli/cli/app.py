"""The root Typer app: global options, command wiring, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any

import typer
from typer._click.core import Command, Context
from typer._click.exceptions import UsageError as ClickUsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperGroup

from ftcli import __version__
from ftcli.cli.context import AppContext
from ftcli.data.errors import FtcliError, redact

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
JSON_REQUESTED = "ftcli.json"

# Every command: where it lives and its line in `ftcli --help`. Commands load only when used, so starting ftcli
# (and `ftcli --help`) never imports the others (rich tables, the SDK, the data core).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": ("ftcli.cli.convert", "convert", "Convert a raw dataset into OpenAI's chat (or DPO) JSONL."),
    "check": ("ftcli.cli.check", "check", "Lint a training file: every problem with its line and JSON path."),
    "rules": ("ftcli.cli.rules", "rules", "List the rule codes of `ftcli check`."),
    "upload": ("ftcli.cli.upload", "upload", "Upload a training file (checked first; resumable)."),
    "train": ("ftcli.cli.train", "train", "Start a fine-tuning job (prints its id)."),
    "status": ("ftcli.cli.jobs", "status", "Recent jobs, or one job's status, events and results; --wait."),
    "cancel": ("ftcli.cli.jobs", "cancel", "Cancel a job (asks first unless --yes)."),
    "pause": ("ftcli.cli.jobs", "pause", "Pause a running job (resume it later)."),
    "resume": ("ftcli.cli.jobs", "resume", "Resume a paused job."),
    "chat": ("ftcli.cli.chat", "chat", "Talk to a model; --compare two; --eval on held-out examples."),
    "models": ("ftcli.cli.models", "app", "Models with their base and shutdown day; `models export` their files."),
    "export": ("ftcli.cli.export", "export", "Bring jobs, data and results out of a backend; golden answers."),
    "eval": (
        "ftcli.cli.eval",
        "eval_command",
        "Is the new model as good as the old one? Graders, intervals, a CI gate.",
    ),
    "serve": ("ftcli.cli.serve", "serve", "The private local backend: OpenAI's API with LoRA training here."),
    "profile": ("ftcli.cli.profile", "app", "Named connection profiles (OpenAI, Azure, local, any base URL)."),
}


@cache
def load_command(name: str) -> Command:
    """The click command for `name`, built by Typer from its function (or sub-app) on first use."""
    module, attribute, short = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Command = typer.main.get_group(target)
        command.help = command.help or short
    else:
        single = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyCommands(Mapping[str, Command]):
    """The group's commands, each built on first lookup."""

    def __getitem__(self, name: str) -> Command:
        if name not in COMMANDS:
            raise KeyError(name)
        return load_command(name)

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class FtcliGroup(TyperGroup):
    """Commands load lazily (see COMMANDS). Service and data errors become a message on stderr and a documented exit
    code; never a traceback."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()  # type: ignore[assignment]

    def list_commands(self, ctx: Context) -> list[str]:  # noqa: ARG002 (click's signature)
        return list(COMMANDS)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        # The root help is plain and comes from the table above, so it loads no command; each command's own help
        # (`ftcli check --help`) is Typer's rich one.
        Command.format_help(self, ctx, formatter)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:  # noqa: ARG002 (click's signature)
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        args = json_flag_first(args)
        ctx.meta[JSON_REQUESTED] = args[:1] == ["--json"]  # read by --version, which is parsed before --json
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Context) -> Any:
        from ftcli.cli.output import print_error

        try:
            return super().invoke(ctx)
        except FtcliError as exc:  # the one root: data, service and CLI errors, each with its exit code
            print_error(redact(exc.message), hint=exc.hint, as_json=_json_mode(ctx))
            raise typer.Exit(exc.exit_code) from None
        except ClickUsageError as exc:
            if not _json_mode(ctx):
                raise  # click prints the usage line and the message itself
            print_error(
                exc.format_message(), hint=f"{exc.ctx.command_path if exc.ctx else 'ftcli'} --help", as_json=True
            )
            raise typer.Exit(EXIT_USAGE) from None
        except UnicodeDecodeError as exc:
            print_error(f"the input is not UTF-8 text (byte {exc.start}: {exc.reason})", as_json=_json_mode(ctx))
            raise typer.Exit(EXIT_USAGE) from None
        except OSError as exc:  # a file we could not read or write, a full disk, a closed pipe
            where = f"{exc.filename}: " if exc.filename else ""
            print_error(f"{where}{exc.strerror or exc}", as_json=_json_mode(ctx))
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print_error("interrupted", as_json=_json_mode(ctx))
            raise typer.Exit(EXIT_INTERRUPTED) from None


def json_flag_first(args: list[str]) -> list[str]:
    """`--json` is the root's flag but may be written before or after the verb (`ftcli status JOB --json`): every
    occurrence is moved to the front, where the root parses it. After `--` it is an ordinary argument."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args
    return ["--json", *(arg for arg in args[:end] if arg != "--json"), *args[end:]]


def _json_mode(ctx: Context) -> bool:
    """--json was given (read from the parsed arguments: an error can come before the root's callback ran), or a
    command switched to JSON (`check --format json`)."""
    return bool(ctx.meta.get(JSON_REQUESTED)) or (isinstance(ctx.obj, AppContext) and ctx.obj.json)


app = typer.Typer(
    cls=FtcliGroup,
    name="ftcli",
    help="Fine-tune chat models on your own data: convert, check, upload, train, status, chat.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        from ftcli.cli.emit import JSON_SCHEMA_VERSION

        if ctx.meta.get(JSON_REQUESTED):
            sys.stdout.write(json.dumps({"version": __version__, "json_schema": JSON_SCHEMA_VERSION}) + "\n")
        else:
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
        ctx.call_on_close(_debug_logging(ctx.obj))


def _debug_logging(app_ctx: AppContext) -> Callable[[], None]:
    """Log the SDK's and the HTTP client's requests to stderr, with anything key-like removed. Returns the undo,
    run when the command ends (in-process callers, tests among them, must not keep a handler on a closed stream)."""
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
    loggers = [logging.getLogger(name) for name in ("openai", "httpx2", "ftcli")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)

    def undo() -> None:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)

    return undo


def main() -> None:
    # User data can hold lone surrogates (JSON escapes like \ud800, undecodable file names); printed as escapes,
    # they can't crash a report halfway.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    app()
