"""The root Typer app: global options, command wiring, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any

import typer
from typer._click.core import Command, Context
from typer._click.exceptions import UsageError as ClickUsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from ftcli import __version__
from ftcli.cli.context import AppContext
from ftcli.data.errors import FtcliError, redact

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70  # a bug in ftcli (sysexits' EX_SOFTWARE): docs/json.md
JSON_REQUESTED = "ftcli.json"
HELP_OPTION_NAMES = ["-h", "--help"]

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


# The end of each command's --help: one or two commands to copy (by command path; every command and sub-command has
# some: tests/cli/test_help.py walks them all).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "convert": (
        "ftcli convert alpaca.json -o train.jsonl --split 0.1 --dedup",
        "ftcli convert faq.csv -o faq.jsonl --map user=question --map assistant=answer",
    ),
    "check": ("ftcli check train.jsonl --model gpt-4.1-mini", "ftcli check train.jsonl --format github --strict"),
    "rules": ("ftcli rules", "ftcli rules FT104"),
    "upload": ("ftcli upload train.jsonl",),
    "train": (
        "ftcli train --file train.jsonl --model gpt-4.1-mini-2025-04-14 --suffix legal --wait",
        "ftcli --base-url http://127.0.0.1:8765/v1 train --file train.jsonl --model smollm2-135m --yes",
    ),
    "status": ("ftcli status", "ftcli status ftjob-abc123 --events --wait"),
    "cancel": ("ftcli cancel ftjob-abc123 --yes",),
    "pause": ("ftcli pause ftjob-abc123",),
    "resume": ("ftcli resume ftjob-abc123",),
    "chat": (
        'ftcli chat --model ft:gpt-4.1-mini-2025-04-14:acme:legal:abc123 "How long is a probation period?"',
        "ftcli chat --model ft:gpt-4.1-mini-2025-04-14:acme:legal:abc123 --compare gpt-4.1-mini < prompts.txt",
    ),
    "models": ("ftcli models --fine-tuned", "ftcli models --trainable"),
    "models export": (
        "ftcli models export ft:HuggingFaceTB/SmolLM2-135M-Instruct:local:legal:ftjob-abc123 --out legal-adapter",
        "ftcli models export ft:HuggingFaceTB/SmolLM2-135M-Instruct:local:legal:ftjob-abc123 --out legal "
        "--format merged",
    ),
    "export": (
        "ftcli export --out exports/",
        "ftcli export --golden prompts.jsonl --model ft:gpt-4.1-mini-2025-04-14:acme:legal:abc123 -o golden.jsonl",
    ),
    "eval": (
        "ftcli eval held-out.jsonl --model gpt-4.1-mini --model ft:gpt-4.1-mini-2025-04-14:acme:legal:abc123",
        "ftcli eval golden.jsonl --model ft:gpt-4.1-mini-2025-04-14:acme:legal:abc123 --min-score chrf=0.6 -o report",
    ),
    "serve": ("ftcli serve", "ftcli serve --port 8765 --open"),
    "profile": ("ftcli profile add local --base-url http://127.0.0.1:8765/v1 --use", "ftcli profile list"),
    "profile add": (
        "ftcli profile add local --base-url http://127.0.0.1:8765/v1 --use",
        "ftcli profile add tg --kind together --api-key-env TOGETHER_API_KEY",
    ),
    "profile list": ("ftcli profile list",),
    "profile use": ("ftcli profile use local", "ftcli profile use --none"),
    "profile remove": ("ftcli profile remove local",),
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
        # no --install-completion on each command: completion is the root's (`ftcli --install-completion`)
        single = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _finish_help(command, name)
    return command


def _finish_help(command: Command, path: str) -> None:
    """The help of a command and its sub-commands: examples at the end, and no `<bool>` after a flag (a flag takes
    no value; the help option included, which click makes on first use, so it is made here)."""
    from rich.markup import escape

    command.epilog = "Examples:\n" + "\n".join(f"  {escape(line)}" for line in EXAMPLES.get(path, ()))
    help_option = command.get_help_option(Context(command, help_option_names=HELP_OPTION_NAMES))
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    for sub_name, sub_command in getattr(command, "commands", {}).items():
        _finish_help(sub_command, f"{path} {sub_name}")


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
            _remember_known_keys(ctx)
            return super().invoke(ctx)
        except FtcliError as exc:  # the one root: data, service and CLI errors, each with its exit code
            print_error(redact(exc.message), hint=_hint(exc, ctx), as_json=_json_mode(ctx))
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
        except Exception as exc:  # a bug: one line that says so, the traceback only with --debug
            if _is_click_control(exc):
                raise  # typer.Exit, Abort and click's own errors are how commands end, not bugs
            debug = isinstance(ctx.obj, AppContext) and ctx.obj.debug
            if debug:
                import traceback

                sys.stderr.write(redact("".join(traceback.format_exception(exc))))
            first_line = next(iter(str(exc).splitlines()), "")[:300]
            what = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
            again = "the traceback is above" if debug else "rerun with --debug for the traceback"
            print_error(f"internal error, a bug in ftcli ({what}); {again}", as_json=_json_mode(ctx))
            raise typer.Exit(EXIT_INTERNAL) from None


def _hint(exc: FtcliError, ctx: Context) -> str | None:
    """The error's hint; for a 401 from a loopback URL the environment's key was kept from, why and what to do."""
    settings = ctx.obj._settings if isinstance(ctx.obj, AppContext) else None
    if settings is not None and settings.key_withheld:
        from ftcli.service.errors import AuthError
        from ftcli.service.settings import WITHHELD_HINT

        if isinstance(exc, AuthError):
            return WITHHELD_HINT
    return exc.hint


def _is_click_control(exc: Exception) -> bool:
    control: tuple[type[BaseException], ...] = (TyperException, typer.Exit, typer.Abort)
    click = sys.modules.get("click")  # the real click, if something (uvicorn) loaded it
    if click is not None:
        control += (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)
    return isinstance(exc, control)


def _remember_known_keys(ctx: Context) -> None:
    """Every key ftcli knows, for `redact` (data/errors.py) to remove from all it prints: the key variables, the
    profiles' keys, the runtime files' keys, and a command's `--api-key` / `--api-key-env` (`ftcli serve`)."""
    import os

    from ftcli.data.errors import forget_secrets, remember_secrets
    from ftcli.service.settings import known_keys

    forget_secrets()
    given: list[str | None] = []
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    for index, word in enumerate(words):
        name, equals, value = word.partition("=")
        if name in ("--api-key", "--api-key-env"):
            value = value if equals else (words[index + 1] if index + 1 < len(words) else "")
            given.append(value if name == "--api-key" else os.environ.get(value))
    remember_secrets(*known_keys(), *given)


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
    context_settings={"help_option_names": HELP_OPTION_NAMES},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        from ftcli.cli.emit import JSON_SCHEMA_VERSION, emit

        # parsed before the root's callback has made the AppContext: one made here carries --json
        shown = AppContext(json=bool(ctx.meta.get(JSON_REQUESTED)))
        emit(shown, {"version": __version__, "json_schema": JSON_SCHEMA_VERSION}, lambda: f"ftcli {__version__}")
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
