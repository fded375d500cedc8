"""`ftcli eval DATA --model M [--model M2 …]`: is the new model as good as the old one? Every model answers every case
of DATA (chat JSONL or `export --golden` answers; with `--grader-file`, reinforcement prompts too), graders score the
answers against the references (or OpenAI's grader by itself), and the report compares the models. Exit 0, or 1 when
a model falls below a `--min-score`, 2 on bad usage or data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ftcli.cli.context import AppContext, app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from openai import OpenAI

    from ftcli.service.eval_run import ModelSpec, OpenAIGrader


def eval_command(
    ctx: typer.Context,
    data: Annotated[
        Path,
        typer.Argument(
            help="Chat JSONL: the last assistant message of each line is the reference. With --grader-file, "
            "reinforcement records (messages ending with the prompt, plus the fields the grader reads) too."
        ),
    ],
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="A model to evaluate (repeatable; the first is the baseline). PROFILE:MODEL asks it on that "
            "profile's backend, e.g. local:ft:… or openai:ft:gpt-4.1-mini-…",
        ),
    ],
    grader: Annotated[
        list[str] | None,
        typer.Option(
            "--grader",
            "-g",
            help="exact, normalised-exact, chrf, rouge-l, json, json-schema, tool-calls, similarity, length-ratio "
            "(repeatable or comma-separated; default: normalised-exact, chrf, rouge-l, tool-calls, or none with "
            "--grader-file).",
        ),
    ] = None,
    grader_file: Annotated[
        list[Path] | None,
        typer.Option(
            help="An OpenAI grader (JSON: string_check, text_similarity, score_model, label_model, python, multi), run "
            "by the engine reinforcement training uses, each case's record as {{item}}, the answer as {{sample}}; "
            "reported under its `name` (repeatable).",
        ),
    ] = None,
    min_score: Annotated[
        list[str] | None,
        typer.Option(help="grader=S: exit 1 when any model's mean on that grader is below S (for CI; repeatable)."),
    ] = None,
    schema: Annotated[Path | None, typer.Option(help="JSON Schema for the json-schema grader.")] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="A model (PROFILE:MODEL too) that compares each answer with the reference, asked in both orders: "
            "grader `judge`, 1 better, 0.5 as good, 0 worse."
        ),
    ] = None,
    rubric: Annotated[Path | None, typer.Option(help="A text file: what the judge should value.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write report.html and cases.csv here.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature.")] = 0.0,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Longest answer, in tokens.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, where the backend takes one.")] = None,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight per model.")] = 4,
    publish: Annotated[
        bool | None,
        typer.Option(
            "--publish/--no-publish",
            help="Leave the run on the `ftcli serve` page (default: when the backend is an ftcli serve here).",
        ),
    ] = None,
) -> None:
    """Evaluate models on reference answers: graders, 95 % intervals, wins/ties/losses, a CI gate (--min-score).
    Answers are cached per model and settings: a rerun asks only what is missing. With --json: one document."""
    import json

    from rich.text import Text

    from ftcli.data.eval.cases import read_cases
    from ftcli.data.eval.graders import DEFAULT_GRADERS
    from ftcli.data.eval.graders import grader as find_grader
    from ftcli.render.eval import report_view
    from ftcli.service.eval_run import Judge, Sampling, parse_model, run_eval
    from ftcli.service.ledger import data_dir
    from ftcli.service.profiles import ProfileStore

    app = app_context(ctx)
    defaults = () if grader_file else DEFAULT_GRADERS
    names = [n.strip() for value in grader or defaults for n in value.split(",") if n.strip()]
    graders = [find_grader(name) for name in dict.fromkeys(names)]
    openai_graders = [_openai_grader(path) for path in grader_file or ()]
    thresholds = _thresholds(min_score)
    options: dict[str, Any] = {}
    if schema is not None:
        try:
            options["schema"] = json.loads(schema.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--schema {schema}: not a readable JSON file ({exc})") from None
    cases, problems = read_cases(data, prompts=bool(openai_graders))
    for problem in problems[:20] if not app.json else ():
        stderr().print(Text.assemble(("warning:", "yellow"), f" {data}:{problem.line}: {problem.message} (skipped)"))
    profiles = {p.name for p in ProfileStore.default().list()}
    specs = [parse_model(text, profiles) for text in model]
    if rubric is not None and judge is None:
        raise UsageError("--rubric is for the judge", hint="add --judge MODEL")
    judged = None
    if judge is not None:
        try:
            judged = Judge(parse_model(judge, profiles), rubric.read_text(encoding="utf-8") if rubric else None)
        except OSError as exc:
            raise UsageError(f"--rubric {rubric}: {exc.strerror}") from None
    with _progress(app, len(cases) * len(specs)) as advance:
        report = run_eval(
            cases,
            problems,
            specs,
            graders,
            data=str(data),
            client_for=_clients(app),
            cache_folder=data_dir() / "eval-cache",
            sampling=Sampling(temperature, max_tokens, seed),
            options=options,
            thresholds=thresholds,
            parallel=parallel,
            on_answer=advance,
            judge=judged,
            openai_graders=openai_graders,
            spec_of=lambda text: parse_model(text, profiles),
        )
    for failure in [f for m in report.models for f in m.grader_errors][:20] if not app.json else ():
        shown = f" {data}:{failure.line}: {failure.grader}: {failure.message} (scored 0, as training scores it)"
        stderr().print(Text.assemble(("warning:", "yellow"), shown))
    if out is not None:
        _write(app, report, out)
    document = report.to_dict()
    if publish or (publish is None and app.settings().on_this_machine()):
        from ftcli.service.eval_run import publish as leave_on_server

        eval_id = leave_on_server(app.client(), report)
        if eval_id is not None:
            document["published"] = eval_id
            page = (app.settings().base_url or "").rstrip("/").removesuffix("/v1") + f"/#/evals/{eval_id}"
            if not app.json:
                stderr().print(f"on the server's page: {page}", highlight=False, markup=False)
    emit(app, document, lambda: report_view(report))
    raise typer.Exit(report.exit_code)


def _openai_grader(path: Path) -> OpenAIGrader:
    """A grader file's grader, validated (a GraderError names the field at fault), under its own name."""
    from ftcli.cli.params import json_file
    from ftcli.data.graders.spec import GraderError, parse_grader
    from ftcli.service.eval_run import OpenAIGrader

    try:
        definition = parse_grader(json_file(path, "--grader-file"))
    except GraderError as exc:
        raise GraderError(f"--grader-file {path}: {exc.message}", hint=exc.hint) from None
    return OpenAIGrader(definition.name, definition)


def _thresholds(values: list[str] | None) -> dict[str, float]:
    found = {}
    for value in values or ():
        name, sep, number = value.partition("=")
        try:
            found[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--min-score {value!r}: expected grader=S", hint="--min-score chrf=0.6")
    return found


def _clients(app: AppContext) -> Any:
    made: dict[str | None, tuple[OpenAI, str]] = {}

    def client_for(spec: ModelSpec) -> tuple[OpenAI, str]:
        if spec.profile not in made:
            if spec.profile is None:
                made[None] = (app.client(), app.settings().backend_id)
            else:
                from ftcli.service.client import make_client
                from ftcli.service.settings import resolve_settings

                settings = resolve_settings(profile=spec.profile)
                made[spec.profile] = (make_client(settings), settings.backend_id)
        return made[spec.profile]

    return client_for


def _progress(app: AppContext, total: int) -> Any:
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    @contextmanager
    def bar() -> Any:
        with Progress(
            TextColumn("answers"), BarColumn(), MofNCompleteColumn(), console=stderr(), disable=app.json, transient=True
        ) as progress:
            task = progress.add_task("answers", total=total)
            yield lambda: progress.advance(task)

    return bar()


def _write(app: AppContext, report: Any, out: Path) -> None:
    """`--out`: the HTML report and one CSV row per case and model."""
    from ftcli.data.atomic import write_atomic
    from ftcli.render.eval import cases_csv, report_html

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "cases.csv", cases_csv(report.rows()).encode())
    write_atomic(out / "report.html", report_html(report).encode())
    if not app.json:
        stderr().print(f"report: {out / 'report.html'}, cases: {out / 'cases.csv'}", highlight=False, markup=False)
