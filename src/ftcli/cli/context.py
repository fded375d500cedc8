"""Global options, resolved once per invocation and passed to commands through `ctx.obj`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from openai import OpenAI

    from ftcli.service.backends.base import Backend
    from ftcli.service.ledger import Ledger
    from ftcli.service.settings import Settings


@dataclass
class AppContext:
    profile: str | None = None
    base_url: str | None = None
    json: bool = False
    debug: bool = False
    emitted: bool = False  # the one JSON document of --json has been written (cli/emit.py)
    _settings: Settings | None = field(default=None, repr=False)
    _client: OpenAI | None = field(default=None, repr=False)

    def use_backend(self, profile: str | None) -> None:
        """A command's own `--backend PROFILE` (same as the global `--profile`), before anything connects."""
        if profile:
            self.profile, self._settings, self._client = profile, None, None

    def settings(self) -> Settings:
        if self._settings is None:
            from ftcli.data.errors import remember_secrets
            from ftcli.service.settings import resolve_settings

            self._settings = resolve_settings(profile=self.profile, base_url=self.base_url)
            remember_secrets(self._settings.api_key)  # whatever its source, it is never printed
        return self._settings

    def client(self, **options: Any) -> OpenAI:
        if self._client is None:
            from ftcli.service.client import make_client

            self._client = make_client(self.settings(), **options)
        return self._client

    def backend(self) -> Backend:
        """The fine-tuning service the settings name (OpenAI's protocol, or Together's), over this client."""
        from ftcli.service.backends import open_backend

        return open_backend(self.settings(), self.client())

    def close(self) -> None:
        """Close the HTTP connections of the client, if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def ledger(self) -> Ledger:
        from ftcli.service.ledger import Ledger

        return Ledger.for_backend(self.settings().backend_id)


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, AppContext) else AppContext()
