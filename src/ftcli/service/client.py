"""Build the `openai` client for resolved settings: OpenAI, Azure OpenAI, or any OpenAI-compatible base URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ftcli.data.local_server import key_for
from ftcli.service.errors import UsageError
from ftcli.service.loopback import refuse_foreign_listener
from ftcli.service.settings import Settings

if TYPE_CHECKING:
    import httpx2
    from openai import OpenAI

DEFAULT_TIMEOUT = 60.0
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "ftcli-local"  # sent to servers that need no key (the SDK insists on one)
# `ftcli serve` on this machine: a server that is up answers, however slowly (a first chat on a busy CPU loads the
# model, then generates), and one that died closes the connection at once; so the wait for an answer is long
LOCAL_READ_TIMEOUT = 3600.0


def make_client(
    settings: Settings,
    *,
    max_retries: int = 2,
    timeout: float = DEFAULT_TIMEOUT,
    http_client: httpx2.Client | None = None,
) -> OpenAI:
    import openai

    _check_url(settings.azure_endpoint or settings.base_url)
    refuse_foreign_listener(settings.azure_endpoint or settings.base_url)  # another user's port gets nothing
    if settings.kind == "azure":
        if not settings.azure_endpoint:
            raise UsageError("Azure needs an endpoint", hint="set AZURE_OPENAI_ENDPOINT or use an azure profile")
        if not settings.api_key:
            raise UsageError("no API key for Azure OpenAI", hint="set AZURE_OPENAI_API_KEY")
        return openai.AzureOpenAI(
            azure_endpoint=settings.azure_endpoint,
            api_key=settings.api_key,
            api_version=settings.api_version,
            max_retries=max_retries,
            timeout=timeout,
            http_client=http_client,
        )
    key = settings.api_key
    if not key:
        if settings.kind == "openai":
            raise UsageError("no API key", hint="set OPENAI_API_KEY, pass --profile, or run `ftcli profile add`")
        if settings.kind == "together":
            raise UsageError(
                "no API key for Together", hint="set TOGETHER_API_KEY, or name its variable in the profile"
            )
        # `ftcli serve` on this machine leaves its per-start key for this user's commands (data/local_server.py)
        key = (key_for(settings.base_url) if settings.on_this_machine() else None) or LOCAL_PLACEHOLDER_KEY
    waits: float | openai.Timeout = timeout
    if settings.on_this_machine():  # only the wait for an answer: connecting and sending keep the usual timeout
        waits = openai.Timeout(timeout, read=max(timeout, LOCAL_READ_TIMEOUT))
    return openai.OpenAI(
        api_key=key,
        # Explicit: the settings already read OPENAI_BASE_URL; the SDK would read it again, even when empty.
        base_url=settings.base_url or OPENAI_URL,
        organization=settings.organization,
        project=settings.project,
        max_retries=max_retries,
        timeout=waits,
        http_client=http_client,
    )


def _check_url(url: str | None) -> None:
    """A URL the HTTP client can't parse (`http://0177.0.0.1/`) is the user's to fix, said before any request."""
    import httpx2

    if not url:
        return
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        raise UsageError(f"{url!r} is not a URL ftcli can reach: {exc}", hint="e.g. http://127.0.0.1:8765/v1") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"{url!r} is not an http(s) URL with a host", hint="e.g. http://127.0.0.1:8765/v1")
