"""`ftcli profile add/list/use/remove`: named connections in a 0600 TOML file in the user's config directory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ftcli.cli.context import app_context
from ftcli.cli.emit import emit

app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Profile name, e.g. local, openai, azure.")],
    kind: Annotated[
        str, typer.Option(help="openai, azure, compatible (any OpenAI-compatible server) or together.")
    ] = "compatible",
    base_url: Annotated[str | None, typer.Option(help="Base URL, e.g. http://127.0.0.1:8765/v1.")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Environment variable that holds the key.")] = None,
    azure_endpoint: Annotated[str | None, typer.Option()] = None,
    api_version: Annotated[str | None, typer.Option()] = None,
    organization: Annotated[str | None, typer.Option()] = None,
    project: Annotated[str | None, typer.Option()] = None,
    use: Annotated[
        bool, typer.Option("--use", help="Make it the current profile (it then outranks OPENAI_API_KEY & co.).")
    ] = False,
) -> None:
    """Add or replace a profile. Keys are read from an environment variable (--api-key-env), never stored."""
    from ftcli.service.profiles import Profile, ProfileStore

    ProfileStore.default().add(
        Profile(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key_env=api_key_env,
            azure_endpoint=azure_endpoint,
            api_version=api_version,
            organization=organization,
            project=project,
        ),
        make_current=use,
    )
    emit(app_context(ctx), {"profile": name, "saved": True, "current": use}, lambda: f"profile {name} saved")


@app.command("list")
def list_profiles(ctx: typer.Context) -> None:
    """List profiles; * marks the current one."""
    from ftcli.service.profiles import ProfileStore

    store = ProfileStore.default()
    current = store.current_name()
    rows = [
        {
            "name": p.name,
            "current": p.name == current,
            "kind": p.kind,
            "url": p.azure_endpoint or p.base_url or "https://api.openai.com/v1",
            "key_from": p.api_key_env,
        }
        for p in store.list()
    ]

    def table() -> Table:
        view = Table("", "name", "kind", "url", "key from", show_edge=False)
        for row in rows:
            # Text, not markup: a name or URL holding `[/x]` is shown as written
            view.add_row(
                "*" if row["current"] else "",
                *(Text(str(row[key] or "-")) for key in ("name", "kind", "url", "key_from")),
            )
        return view

    emit(app_context(ctx), rows, table)


@app.command("use")
def use(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The profile to use from now on.")] = None,
    none: Annotated[
        bool, typer.Option("--none", help="No current profile: back to the environment's settings.")
    ] = False,
) -> None:
    """Make a profile the current one. It then outranks OPENAI_API_KEY, OPENAI_BASE_URL and the Azure variables (only
    --profile, FTCLI_PROFILE and --base-url outrank it); `--none` clears it."""
    from ftcli.service.errors import UsageError
    from ftcli.service.profiles import ProfileStore

    if (name is None) == (not none):
        raise UsageError(
            "name one profile, or pass --none", hint="ftcli profile use local  |  ftcli profile use --none"
        )
    store = ProfileStore.default()
    if name is None:
        store.clear_current()
        emit(app_context(ctx), {"profile": None, "current": False}, lambda: "no current profile")
        return
    store.use(name)
    emit(app_context(ctx), {"profile": name, "current": True}, lambda: f"using {name}")


@app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a profile."""
    from ftcli.service.profiles import ProfileStore

    ProfileStore.default().remove(name)
    emit(app_context(ctx), {"profile": name, "removed": True}, lambda: f"removed {name}")
