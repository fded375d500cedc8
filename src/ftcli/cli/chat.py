"""`ftcli chat --model M [PROMPT]`: one streamed answer, or a REPL with /system, /reset, /save."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import app_context
from ftcli.cli.output import stderr, warn_shutdown
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
) -> None:
    """Talk to a model. Without a prompt and on a terminal: a REPL (/system TEXT, /reset, /save FILE, /exit)."""
    from ftcli.service.chat import ChatParams

    app = app_context(ctx)
    warn_shutdown(model)
    params = ChatParams(model=model, temperature=temperature, max_tokens=max_tokens)
    if eval_file is not None:
        _evaluate(app, params, eval_file, eval_output)
        return
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if compare is not None:
        _compare(
            app, params, ChatParams(model=compare, temperature=temperature, max_tokens=max_tokens), messages, prompt
        )
        return
    if prompt is None and interactive():
        _repl(app, params, messages)
        return
    text = sys.stdin.read() if prompt in (None, "-") else prompt
    if not text or not text.strip():
        raise UsageError("empty prompt")
    messages.append({"role": "user", "content": text})
    answer = _answer(app, params, messages, stream=stream)
    if app.json:
        sys.stdout.write(json.dumps({"model": model, "answer": answer}, ensure_ascii=False) + "\n")


def interactive() -> bool:
    """Whether to start the REPL: a person at a terminal, not a pipe."""
    return sys.stdin.isatty()


def _answer(app: Any, params: Any, messages: list[dict[str, Any]], *, stream: bool) -> str:
    from ftcli.service import chat as service

    client = app.client()
    if app.json or not stream:
        answer = service.complete(client, params, messages)
        if not app.json:
            typer.echo(answer)
        return answer
    parts: list[str] = []
    try:
        for delta in service.stream(client, params, messages):
            parts.append(delta)
            sys.stdout.write(delta)
            sys.stdout.flush()
    except StreamInterrupted:
        sys.stdout.write("\n")
        raise
    sys.stdout.write("\n")
    return "".join(parts)


def _repl(app: Any, params: Any, messages: list[dict[str, Any]]) -> None:
    console = stderr()
    console.print(
        f"chatting with {params.model}; /system TEXT, /reset, /save FILE, /exit. End a line with \\ to continue it.",
        highlight=False,
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
            console.print(f"saved to {rest or 'chat.jsonl'}", highlight=False)
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        try:
            answer = _answer(app, params, messages, stream=True)
        except StreamInterrupted as exc:
            answer = exc.partial
            console.print(f"[yellow]{exc.message}[/]; kept what arrived")
        messages.append({"role": "assistant", "content": answer})


def _compare(app: Any, left: Any, right: Any, messages: list[dict[str, Any]], prompt: str | None) -> None:
    """Answer each prompt with both models; show them side by side (JSON with --json)."""
    from rich.table import Table

    from ftcli.cli.output import stdout
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
    if app.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("prompt", left.model, right.model, show_lines=True)
    for row in rows:
        table.add_row(row["prompt"], row[left.model], row[right.model])
    stdout().print(table)


def _evaluate(app: Any, params: Any, path: Path, output: Path) -> None:
    from ftcli.data.convert.writer import write_atomic
    from ftcli.service.evaluate import evaluate, load_cases, summarise

    cases = load_cases(path)
    results = []
    console = stderr()
    for result in evaluate(app.client(), params, cases):
        results.append(result)
        if not app.json:
            console.print(
                f"line {result.line}: similarity {result.similarity:.2f}{' (exact)' if result.exact else ''}",
                highlight=False,
            )
    write_atomic(output, (r.to_json() + "\n" for r in results))
    summary = summarise(results)
    data = {
        "model": params.model,
        "examples": summary.examples,
        "exact_matches": summary.exact_matches,
        "exact_rate": round(summary.exact_rate, 4),
        "mean_similarity": summary.mean_similarity,
        "results": str(output),
    }
    if app.json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        typer.echo(
            f"{summary.examples} examples: {summary.exact_matches} exact ({summary.exact_rate:.0%}), "
            f"mean similarity {summary.mean_similarity:.2f}; per-example results in {output}"
        )


def _read_prompt() -> str:
    lines = [input("you> ")]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(input("...> "))
    return "\n".join(lines)
