"""`ftcli serve`: the private local backend (OpenAI's fine-tuning API on this machine; data never leaves it)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr
from ftcli.data.local_server import publish, withdraw
from ftcli.service.errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where files, jobs and models live (default: the user's data directory).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="Bearer key clients must send (visible to other local users: prefer the env)."),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the bearer key clients must send.")
    ] = "FTCLI_SERVER_API_KEY",
    parallel_jobs: Annotated[int, typer.Option(min=1, help="Jobs trained at the same time.")] = 1,
    lora_rank: Annotated[int | None, typer.Option(min=1, help="Default LoRA rank for jobs that don't set one.")] = None,
    lora_alpha: Annotated[int | None, typer.Option(min=1, help="Default LoRA alpha.")] = None,
    lora_dropout: Annotated[float | None, typer.Option(min=0.0, max=0.9, help="Default LoRA dropout.")] = None,
    allow_downloads: Annotated[
        bool, typer.Option(help="Let base models named by a Hugging Face id download (off: this machine only).")
    ] = False,
    model_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-root",
            help="A folder whose model folders clients may name as base models (repeatable; none by default).",
        ),
    ] = None,
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-dir",
            help="Serve a model folder by its name: a merged model (chat and train on it) or a PEFT adapter (chat); "
            "repeatable.",
        ),
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the web page (jobs, files, playground) in your browser.")
    ] = False,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens one chat answer may ask for.")] = 4096,
    max_prompt_tokens: Annotated[
        int, typer.Option(min=1, help="Longest prompt (in tokens) a chat may send; never past the model's context.")
    ] = 16384,
    max_upload: Annotated[
        str, typer.Option(help="Largest file a client may upload: bytes, or with K, M or G (powers of 1024).")
    ] = "8G",
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Data-parallel training processes per job, torchrun + Accelerate (default: one per GPU).",
        ),
    ] = None,
    nodes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Machines each job trains on (torchrun's rendezvous at --rendezvous); this one is node 0, and each "
            "job's events show the command that joins another. The data folder must be shared between them.",
        ),
    ] = 1,
    rendezvous: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of this machine, as the other nodes reach it (with --nodes 2 or more)."),
    ] = None,
) -> None:
    """Serve files, fine-tuning jobs, chat completions and models on OpenAI's protocol, training with LoRA here.
    With --json: one document with the URLs and the data folder once it is listening; logs go to stderr."""
    upload_limit = _size(max_upload)
    roots = [root.expanduser().resolve() for root in model_root or []]
    for root in roots:
        if not root.is_dir():
            raise UsageError(f"--model-root {root} is not a folder")
    os.environ["FTCLI_MODEL_ROOTS"] = os.pathsep.join(str(root) for root in roots)  # the jobs' workers read it too
    folders = [folder.expanduser().resolve() for folder in model_dir or []]
    for folder in folders:
        if not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
            raise UsageError(
                f"--model-dir {folder} holds no model", hint="a folder with config.json or adapter_config.json"
            )
    os.environ["FTCLI_MODEL_DIRS"] = os.pathsep.join(str(folder) for folder in folders)
    # No outbound connections unless allowed: models come from this machine (the bundled bases, the HF cache, a path).
    if allow_downloads:
        os.environ["FTCLI_ALLOW_DOWNLOADS"] = "1"
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import uvicorn

        from ftcli.server.api.chat import ChatLimits
        from ftcli.server.app import create_app
    except ImportError:
        raise UsageError(
            "the local backend needs its extra",
            hint="pip install 'ftcli[local]' (install torch==2.13.0 or another CPU/CUDA build first)",
        ) from None
    from ftcli.service.ledger import data_dir as user_data_dir

    api_key = api_key or os.environ.get(api_key_env) or None
    if host not in LOOPBACK and not api_key:
        raise UsageError(
            f"refusing to listen on {host} without an API key",
            hint=f"set {api_key_env} or pass --api-key, or bind 127.0.0.1",
        )
    # No key given: a new random one for this start, left for this user's ftcli commands in a runtime file that other
    # users can't read (data/local_server.py), and handed to the page through the URL's fragment (never sent).
    made_key = api_key is None
    key: str = api_key or secrets.token_urlsafe(32)
    folder = data_dir or user_data_dir() / "server"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{port}/v1"
    page = f"http://{shown}:{port}/" + (f"#token={key}" if made_key else "")
    cluster = _cluster(nodes, rendezvous, parallel_jobs)
    server_app = create_app(
        folder,
        host=host,
        max_upload_bytes=upload_limit,
        chat_limits=ChatLimits(max_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens),
        api_key=key,
        parallel_jobs=parallel_jobs,
        processes_per_job=processes,
        cluster=cluster,
        lora_defaults={
            name: value
            for name, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha), ("lora_dropout", lora_dropout))
            if value is not None
        },
    )
    app = app_context(ctx)
    runtime_file: list[Path] = []

    class Announced(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            # listening: a client that reads the runtime file or the document can connect at once
            key_file = _publish(base_url, key, folder) if made_key else None
            runtime_file.extend([key_file] if key_file else [])
            key_note = (
                f"its key is new at each start, in {key_file} (ftcli finds it; other clients send it as the bearer key)"
                if key_file
                else "clients send its key as the bearer key"
            )
            stderr().print(
                f"ftcli local backend on {base_url} (data in {folder}); use it with --base-url {base_url}; "
                f"{key_note}; the web page is {page}",
                highlight=False,
            )
            if open_page:
                import webbrowser

                webbrowser.open(page)
            emit(app, {"base_url": base_url, "web": page, "data_dir": str(folder), "key_file": _shown(key_file)})

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            # here, not after run(): uvicorn ends by raising the signal it caught again, which ends the process
            for path in runtime_file:
                withdraw(path)
            await super().shutdown(sockets)

    Announced(uvicorn.Config(server_app, host=host, port=port, log_level="warning")).run()


def _publish(base_url: str, api_key: str, folder: Path) -> Path | None:
    try:
        return publish(base_url, api_key, data_dir=folder)
    except OSError as exc:  # e.g. a read-only home: the server still runs; clients need the key from the page URL
        stderr().print(f"warning: could not write the runtime file with the key: {exc}", highlight=False)
        return None


def _shown(path: Path | None) -> str | None:
    return str(path) if path else None


def _size(text: str) -> int:
    """`8G`, `500M`, `64K` or plain bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("B") or "?"
    factor = units.get(value[-1], 1)
    number = value[:-1] if value[-1] in units else value
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"--max-upload {text!r} is not a size", hint="e.g. 8G, 500M, 64K or a number of bytes")
    return int(number) * factor


def _cluster(nodes: int, rendezvous: str | None, parallel_jobs: int) -> Any:
    from ftcli.server.runner import Cluster

    if nodes == 1:
        if rendezvous:
            raise UsageError("--rendezvous is for a job trained on several machines", hint="add --nodes M")
        return None
    host, _, port = (rendezvous or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("--nodes needs --rendezvous HOST:PORT", hint="this machine's address as the others reach it")
    if parallel_jobs != 1:
        raise UsageError("jobs trained on several machines run one at a time", hint="drop --parallel-jobs")
    return Cluster(nodes=nodes, host=host.strip("[]"), port=int(port))
