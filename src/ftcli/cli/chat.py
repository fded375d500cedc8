"""`ftcli chat --model M [PROMPT]`: one streamed answer, or a REPL with /system, /reset, /save."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import AppContext, app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr, warn_shutdown
from ftcli.render.terminal import printable
from ftcli.service.chat import ChatParams
from ftcli.service.errors import StreamInterrupted, UsageError


def chat(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to talk to (base or fine-tuned).")],
    prompt: Annotated[
        str | None, typer.Argument(help="One prompt; - or piped stdin reads it from stdin; none starts a conversation.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it arrives.")] = True,
    compare: Annotated[
        str | None, typer.Option(help="Also answer with this model (e.g. the base), side by side.")
    ] = None,
    eval_file: Annotated[
        Path | None,
        typer.Option(
            "--eval", help="Score the model on a chat JSONL file (each example minus its last assistant message)."
        ),
    ] = None,
    eval_output: Annotated[Path, typer.Option(help="Per-example results of --eval (JSONL).")] = Path(
        "eval_results.jsonl"
    ),
    tools: Annotated[
        Path | None,
        typer.Option(
            "--tools", help='JSON file of tool definitions to offer (OpenAI format: a list, or {"tools": [...]}).'
        ),
    ] = None,
) -> None:
    """Talk to a model. Without a prompt and on a terminal: a REPL (/system TEXT, /reset, /save FILE, /exit).
    A thinking model's reasoning is shown dim, on stderr, before its answer.
    With --json: the answer, its reasoning, model, tool calls, finish reason and usage as one document."""

    app = app_context(ctx)
    warn_shutdown(model)
    extra = {"tools": _load_tools(tools)} if tools is not None else {}
    params = ChatParams(model=model, temperature=temperature, max_tokens=max_tokens, extra=extra)
    if eval_file is not None:
        _evaluate(app, params, eval_file, eval_output)
        return
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if compare is not None:
        _compare(
            app, params, ChatParams(model=compare, temperature=temperature, max_tokens=max_tokens), messages, prompt
        )
        return
    if prompt is None and interactive() and not app.json:
        _repl(app, params, messages)
        return
    text = sys.stdin.read() if prompt in (None, "-") else prompt
    if not text or not text.strip():
        raise UsageError("empty prompt")
    messages.append({"role": "user", "content": text})
    if app.json:
        from ftcli.service.chat import reply

        emit(app, reply(app.client(), params, messages))
        return
    _answer(app, params, messages, stream=stream)


def interactive() -> bool:
    """Whether to start the REPL: a person at a terminal, not a pipe."""
    return sys.stdin.isatty()


def _answer(app: AppContext, params: ChatParams, messages: list[dict[str, Any]], *, stream: bool) -> str:
    """Print the answer (streamed or whole) and any tool calls it makes; return its text."""
    from ftcli.service import chat as service

    client = app.client()
    thinking = _Reasoning()
    if not stream:
        whole = service.reply(client, params, messages)
        if whole.reasoning:
            thinking.show(whole.reasoning)
        thinking.end()
        if whole.answer or not whole.tool_calls:
            sys.stdout.write(printable(whole.answer) + "\n")
        _print_calls(whole.tool_calls)
        return whole.answer
    calls: list[dict[str, Any]] = []
    parts: list[str] = []
    try:
        for delta in service.stream(client, params, messages, calls, on_reasoning=thinking.show):
            thinking.end()
            parts.append(delta)
            sys.stdout.write(printable(delta))
            sys.stdout.flush()
    except StreamInterrupted:
        thinking.end()
        sys.stdout.write("\n")
        raise
    thinking.end()
    if parts or not calls:
        sys.stdout.write("\n")
    _print_calls(calls)
    return "".join(parts)


class _Reasoning:
    """A thinking model's reasoning, shown apart from its answer: dim, on stderr (the answer alone goes to stdout,
    where a pipe reads it), before the answer."""

    def __init__(self) -> None:
        self.shown = False
        self.console = stderr()

    def show(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style="dim"), end="", highlight=False)
        self.shown = True

    def end(self) -> None:
        """The answer begins: the reasoning's last line ends, once."""
        if self.shown:
            self.console.print()
            self.shown = False


def _print_calls(calls: list[dict[str, Any]]) -> None:
    for call in calls:
        function = call.get("function") or {}
        line = f"→ tool call {function.get('name')}({function.get('arguments', '')})  [{call.get('id')}]"
        sys.stdout.write(printable(line) + "\n")


def _load_tools(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    tools = data.get("tools") if isinstance(data, dict) else data
    if not isinstance(tools, list) or not tools:
        raise UsageError(f'{path}: expected a non-empty list of tool definitions (or {{"tools": [...]}})')
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise UsageError(
                f"{path}: tools[{index}] needs a function with a name",
                hint='e.g. {"type": "function", "function": {"name": "get_weather", "parameters": {...}}}',
            )
    return tools


def _repl(app: AppContext, params: ChatParams, messages: list[dict[str, Any]]) -> None:
    from rich.text import Text

    console = stderr()
    console.print(
        f"chatting with {params.model}; /system TEXT, /reset, /save FILE, /exit. End a line with \\ to continue it.",
        highlight=False,
        markup=False,
    )
    base = list(messages)
    while True:
        try:
            text = _read_prompt()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        command, _, rest = text.strip().partition(" ")
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            messages[:] = list(base)
            continue
        if command == "/system":
            messages[:] = [m for m in messages if m["role"] != "system"]
            messages.insert(0, {"role": "system", "content": rest})
            base = [messages[0]]
            continue
        if command == "/save":
            Path(rest or "chat.jsonl").write_text(
                json.dumps({"messages": messages}, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            console.print(f"saved to {rest or 'chat.jsonl'}", highlight=False, markup=False)
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        try:
            answer = _answer(app, params, messages, stream=True)
        except StreamInterrupted as exc:
            answer = exc.partial
            console.print(Text.assemble((exc.message, "yellow"), "; kept what arrived"))
        messages.append({"role": "assistant", "content": answer})


def _compare(
    app: AppContext, left: ChatParams, right: ChatParams, messages: list[dict[str, Any]], prompt: str | None
) -> None:
    """Answer each prompt with both models; show them side by side (JSON with --json)."""
    from rich.table import Table
    from rich.text import Text

    from ftcli.service.chat import complete

    prompts = [prompt] if prompt not in (None, "-") else [line for line in sys.stdin.read().splitlines() if line]
    if not prompts:
        raise UsageError("--compare needs a prompt (argument or one per stdin line)")
    rows = []
    for text in prompts:
        asked = [*messages, {"role": "user", "content": text}]
        rows.append(
            {
                "prompt": text,
                left.model: complete(app.client(), left, asked),
                right.model: complete(app.client(), right, asked),
            }
        )

    def table() -> Table:
        view = Table(show_lines=True)
        for header in ("prompt", left.model, right.model):
            view.add_column(Text(header))
        for row in rows:
            view.add_row(Text(row["prompt"]), Text(row[left.model]), Text(row[right.model]))
        return view

    emit(app, rows, table)


def _evaluate(app: AppContext, params: ChatParams, path: Path, output: Path) -> None:
    from ftcli.data.convert.writer import write_atomic
    from ftcli.data.eval.cases import text_cases
    from ftcli.service.eval_run import score_answers, summarise_scores

    cases = text_cases(path)
    results = []
    console = stderr()
    for result in score_answers(app.client(), params, cases):
        results.append(result)
        if not app.json:
            console.print(
                f"line {result.line}: similarity {result.similarity:.2f}{' (exact)' if result.exact else ''}",
                highlight=False,
            )
    write_atomic(output, (r.to_json() + "\n" for r in results))
    summary = summarise_scores(results)
    data = {
        "model": params.model,
        "examples": summary.examples,
        "exact_matches": summary.exact_matches,
        "exact_rate": round(summary.exact_rate, 4),
        "mean_similarity": summary.mean_similarity,
        "results": str(output),
    }
    emit(
        app,
        data,
        lambda: (
            f"{summary.examples} examples: {summary.exact_matches} exact ({summary.exact_rate:.0%}), "
            f"mean similarity {summary.mean_similarity:.2f}; per-example results in {output}"
        ),
    )


def _read_prompt() -> str:
    lines = [input("you> ")]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(input("...> "))
    return "\n".join(lines)
