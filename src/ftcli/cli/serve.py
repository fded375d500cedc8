"""`ftcli serve`: the private local backend (OpenAI's fine-tuning API on this machine; data never leaves it)."""

from __future__ import annotations

import errno
import html
import json
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit
from ftcli.cli.output import stderr
from ftcli.cli.params import size
from ftcli.data.atomic import write_atomic
from ftcli.data.local_server import announcement, publish, runtime_dir, withdraw
from ftcli.service.errors import UsageError

MIN_NETWORK_KEY = 32  # characters of a key that guards a server other machines can reach
CLEARTEXT_WARNING = (
    "warning: ftcli serve speaks plain HTTP: on {host} the key, the training data and the answers cross the network "
    "unencrypted; use it on a private network only, or put a TLS proxy or an SSH tunnel in front"
)
RENDEZVOUS_RISK = (
    "the rendezvous of a job trained on several machines has no authentication: whoever reaches {address} can join "
    "the job, read and poison its gradients"
)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Anything but loopback needs an API key of 32 characters or more, and speaks "
            "plain HTTP over the network (a private network, or a TLS proxy in front)."
        ),
    ] = "127.0.0.1",
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
        bool,
        typer.Option(
            "--open",
            help="Open the web page (jobs, files, playground) in your browser, through a private file that redirects "
            "to it: the key never appears on a command line.",
        ),
    ] = False,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens one chat answer may ask for.")] = 4096,
    max_prompt_tokens: Annotated[
        int, typer.Option(min=1, help="Longest prompt (in tokens) a chat may send; never past the model's context.")
    ] = 16384,
    max_upload: Annotated[
        str, typer.Option(help="Largest file a client may upload: bytes, or with K, M or G (powers of 1024).")
    ] = "8G",
    adapter_cache_mb: Annotated[
        int,
        typer.Option(
            min=1,
            help="Memory for fine-tunes' LoRA adapters held beside their base (MiB); the least recently used leave "
            "first.",
        ),
    ] = 1024,
    engine: Annotated[
        str,
        typer.Option(
            help="What answers chats: auto (vLLM where it is installed and a CUDA GPU is there, else the built-in "
            "engine), builtin (continuous batching on the model's own forward, CPU or GPU), or vllm (refused "
            "without a CUDA GPU and the vllm package)."
        ),
    ] = "auto",
    gpu_memory_fraction: Annotated[
        float,
        typer.Option(
            help="With vLLM: the share of the GPU's memory it takes (weights and KV cache); the rest is left to "
            "training jobs.",
        ),
    ] = 0.5,
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
            "job's events show the command that joins another. The data folder must be shared between them. "
            "The rendezvous has no authentication: see --allow-unauthenticated-rendezvous.",
        ),
    ] = 1,
    rendezvous: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of this machine, as the other nodes reach it (with --nodes 2 or more); the rendezvous "
            "listens on HOST's address only."
        ),
    ] = None,
    allow_unauthenticated_rendezvous: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated-rendezvous",
            help="Needed with --nodes 2 or more. WARNING: torch's rendezvous asks nobody for a key: whoever reaches "
            "--rendezvous can join a job, read and poison its gradients. Only on a private network, or behind a "
            "firewall that admits the other nodes alone.",
        ),
    ] = False,
) -> None:
    """Serve files, fine-tuning jobs, chat completions and models on OpenAI's protocol, training with LoRA here.
    With --json: one document with the URLs and the data folder once it is listening; logs go to stderr."""
    upload_limit = size(max_upload, "--max-upload")
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
        from ftcli.server.stopping import GRACE_SECONDS, ExitDeadline
    except ImportError:
        raise UsageError(
            "the local backend needs its extra",
            hint="pip install 'ftcli[local]' (install torch==2.13.0 or another CPU/CUDA build first)",
        ) from None
    from ftcli.server.guard import is_loopback
    from ftcli.service.ledger import data_dir as user_data_dir

    answering = _engine(engine)
    if not 0 < gpu_memory_fraction < 1:
        raise UsageError(
            f"--gpu-memory-fraction must be between 0 and 1 (exclusive), got {gpu_memory_fraction}",
            hint="e.g. 0.5: half the GPU's memory for vLLM, the rest for training",
        )

    api_key = api_key or os.environ.get(api_key_env) or None
    on_network = not is_loopback(host)
    if on_network and not api_key:
        raise UsageError(
            f"refusing to listen on {host} without an API key",
            hint=f"set {api_key_env} or pass --api-key, or bind 127.0.0.1",
        )
    if on_network and api_key and len(api_key) < MIN_NETWORK_KEY:
        raise UsageError(
            f"refusing to listen on {host} with a key of {len(api_key)} characters: whoever reaches the port could "
            f"guess a short one",
            hint=f"use {MIN_NETWORK_KEY} characters or more, e.g. from: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
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
    cluster = _cluster(nodes, rendezvous, parallel_jobs, allowed=allow_unauthenticated_rendezvous)
    listeners = _listen(host, port, base_url)  # before anything else starts: a port taken is a plain usage error
    server_app = create_app(
        folder,
        host=host,
        max_upload_bytes=upload_limit,
        chat_limits=ChatLimits(max_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens),
        adapter_cache_mb=adapter_cache_mb,
        vllm=_vllm_settings(gpu_memory_fraction) if answering == "vllm" else None,
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
                f"{key_note}; the web page is {page}; chats answered by {_engine_note(answering, gpu_memory_fraction)}",
                highlight=False,
            )
            if open_page:
                opener = _open_in_browser(page, port)
                runtime_file.extend([opener] if opener else [])
            document = {"base_url": base_url, "web": page, "data_dir": str(folder), "key_file": _shown(key_file)}
            emit(app, {**document, "engine": answering})

        def handle_exit(self, sig: int, frame: Any) -> None:
            deadline.arm(sig)
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            # here, not after run(): uvicorn ends by raising the signal it caught again, which ends the process
            _remove(runtime_file)
            await super().shutdown(sockets)

    def before_exit() -> None:
        server_app.state.runner.kill_now()
        _remove(runtime_file)

    if on_network:
        stderr().print(CLEARTEXT_WARNING.format(host=host), highlight=False)
    if cluster is not None:
        risk = RENDEZVOUS_RISK.format(address=rendezvous)
        stderr().print(f"warning: {risk}; keep it on a private network or behind a firewall", highlight=False)
    deadline = ExitDeadline(before_exit)
    config = uvicorn.Config(server_app, log_level="warning", timeout_graceful_shutdown=GRACE_SECONDS)
    Announced(config).run(sockets=listeners)


def _engine(setting: str) -> str:
    """`--engine`'s choice on this machine; vLLM asked for where it can't run: a usage error with the reason."""
    from ftcli.server.hardware import UnsupportedSetting, serving_engine, vllm_installed

    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    try:
        return serving_engine(setting, cuda=cuda, vllm_installed=vllm_installed())
    except UnsupportedSetting as exc:
        raise UsageError(str(exc), hint="serve with --engine builtin (or auto) on this machine") from None


def _vllm_settings(gpu_memory_fraction: float) -> Any:
    from ftcli.server.vllm_engine import VllmSettings

    return VllmSettings(gpu_memory_fraction=gpu_memory_fraction)


def _engine_note(answering: str, gpu_memory_fraction: float) -> str:
    if answering == "vllm":
        return f"vLLM (on {gpu_memory_fraction:.0%} of the GPU's memory)"
    return "the built-in engine"


def _listen(host: str, port: int, base_url: str) -> list[socket.socket]:
    """Bound sockets for uvicorn, one per address of `host` (as asyncio would bind them), or a usage error that
    says what to do: a port already taken, an address that isn't this machine's."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host} is not an address of this machine ({exc.strerror})") from None
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use{_holder(base_url)}", hint=(
                f"pick another port with --port (e.g. --port {port + 1}), or stop the server that listens there"
            )) from None  # fmt: skip
        raise UsageError(f"can't listen on {host} port {port}: {exc.strerror or exc}") from None
    return listeners


def _holder(base_url: str) -> str:
    """`by ftcli serve (pid N)` when this user's runtime file names a live process on that port."""
    record = announcement(base_url)
    pid = record.get("pid") if record else None
    if not isinstance(pid, int):
        return ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return f" by ftcli serve (pid {pid})"


def _open_in_browser(page: str, port: int) -> Path | None:
    """Open the page through a file that redirects to it, as Jupyter does: a browser's command line, which every user
    of the machine can read in `ps`, then holds the file's path, and the key stays in the file, 0600 in this user's
    private runtime folder. Returns the file (removed at shutdown)."""
    import webbrowser

    target = runtime_dir() / f"server-{port}-open.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.parent.chmod(0o700)
        write_atomic(target, _redirect_page(page).encode("utf-8"), private=True)
    except OSError as exc:
        stderr().print(f"warning: could not write the page to open ({exc}); open {page} yourself", highlight=False)
        return None
    # in a thread: a browser command that waits for the browser must not hold up the server
    threading.Thread(target=webbrowser.open, args=(target.as_uri(),), name="ftcli-open-page", daemon=True).start()
    return target


def _redirect_page(url: str) -> str:
    shown = html.escape(url, quote=True)
    script = json.dumps(url).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={shown}"><title>ftcli</title></head>\n'
        f'<body><p>Opening <a href="{shown}">the ftcli page</a>…</p>'
        f"<script>window.location.replace({script})</script></body></html>\n"
    )


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix == ".json":
            withdraw(path)  # only if still this process's
        else:
            path.unlink(missing_ok=True)


def _publish(base_url: str, api_key: str, folder: Path) -> Path | None:
    try:
        return publish(base_url, api_key, data_dir=folder)
    except OSError as exc:  # e.g. a read-only home: the server still runs; clients need the key from the page URL
        stderr().print(f"warning: could not write the runtime file with the key: {exc}", highlight=False)
        return None


def _shown(path: Path | None) -> str | None:
    return str(path) if path else None


def _cluster(nodes: int, rendezvous: str | None, parallel_jobs: int, *, allowed: bool) -> Any:
    from ftcli.server.rendezvous import listen
    from ftcli.server.runner import Cluster

    if nodes == 1:
        if rendezvous:
            raise UsageError("--rendezvous is for a job trained on several machines", hint="add --nodes M")
        return None
    host, _, port = (rendezvous or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("--nodes needs --rendezvous HOST:PORT", hint="this machine's address as the others reach it")
    if not allowed:
        raise UsageError(
            f"refusing --nodes {nodes}: {RENDEZVOUS_RISK.format(address=rendezvous)}",
            hint="on a private network, or behind a firewall that admits only the other nodes to that port, "
            "add --allow-unauthenticated-rendezvous",
        )
    if parallel_jobs != 1:
        raise UsageError("jobs trained on several machines run one at a time", hint="drop --parallel-jobs")
    cluster = Cluster(nodes=nodes, host=host.strip("[]"), port=int(port))
    try:  # each job's node 0 listens there (server/rendezvous.py): say now if it can't
        listen(cluster.host, cluster.port).close()
    except OSError as exc:
        raise UsageError(
            f"--rendezvous {rendezvous}: can't listen there ({exc.strerror or exc})",
            hint="name this machine's address as the other nodes reach it, and a free port",
        ) from None
    return cluster
