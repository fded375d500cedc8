"""Connection settings, resolved once into a frozen value.

Where commands go and which key they send, highest first:

    rank  source                                  URL                          key
    1     flags                                   --base-url                   --api-key (resolve_settings'
                                                                                 argument; no global CLI flag)
    2     a chosen profile: --profile,            its base_url or              its api_key, or the variable
          FTCLI_PROFILE, else the current one     azure_endpoint               its api_key_env names
          (`profile use`, `profile add --use`)
    3     the SDK's environment variables         OPENAI_BASE_URL; Azure:      OPENAI_API_KEY; Azure:
          (+ OPENAI_ORG_ID, OPENAI_PROJECT_ID,    AZURE_OPENAI_ENDPOINT        AZURE_OPENAI_API_KEY
          OPENAI_API_VERSION)
    4     defaults                                https://api.openai.com/v1    none

A profile, once chosen, is used whole: the environment's variables are not read for it (except the one its
`api_key_env` names). `--base-url` keeps the key of the rank that would have been used, except on loopback.

A loopback URL (127.0.0.0/8, ::1, localhost, 0.0.0.0) is reachable by every user of the machine, so a key goes there
only if it was named for that very URL. Its key, highest first: `--api-key`; the chosen profile's key when the
profile's URL is that URL; the key the user's own `ftcli serve` left in its runtime file for that port
(data/local_server.py); `OPENAI_API_KEY` when `OPENAI_BASE_URL` is that URL; else none (the client sends a
placeholder). Before anything is sent there, service/loopback.py checks that the listener is the user's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ftcli.data.local_server import is_loopback_url, key_for, published_keys
from ftcli.service.errors import FtcliError, UsageError
from ftcli.service.profiles import Profile, ProfileStore

DEFAULT_AZURE_API_VERSION = "2025-04-01-preview"
TOGETHER_URL = "https://api.together.xyz/v1"
TOGETHER_KEY_ENV = "TOGETHER_API_KEY"
OPENAI_URL = "https://api.openai.com/v1"
WITHHELD_HINT = (
    "ftcli sends a key to a loopback URL only if it was named for that URL: set OPENAI_BASE_URL to it as well, or "
    "`ftcli profile add NAME --base-url URL --api-key-env VARIABLE --use`"
)
# Variables that hold a key ftcli may meet (redacted from everything it prints, whichever backend is in use)
KEY_VARIABLES = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", TOGETHER_KEY_ENV, "FTCLI_SERVER_API_KEY")


@dataclass(frozen=True, slots=True)
class Settings:
    kind: str = "openai"  # "openai" | "azure" | "compatible" (any other base URL, ftcli serve included) | "together"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    organization: str | None = None
    project: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    profile: str | None = None
    key_withheld: bool = False  # a key named for another URL was not sent to this loopback one (WITHHELD_HINT)

    @property
    def backend_id(self) -> str:
        """A stable, key-free name for this backend (ledgers and manifests are kept per backend)."""
        where = self.azure_endpoint or self.base_url or OPENAI_URL
        return hashlib.sha256(f"{self.kind}|{where}|{self.organization}|{self.project}".encode()).hexdigest()[:16]

    def on_this_machine(self) -> bool:
        """A backend on loopback (`ftcli serve`): cheap to poll, so waits can poll often."""
        return self.kind == "compatible" and is_loopback_url(self.base_url)

    def describe(self) -> dict[str, str | None]:
        """What the settings point at, safe to show: the key only as present or not."""
        return {
            "profile": self.profile,
            "kind": self.kind,
            "base_url": self.azure_endpoint or self.base_url or OPENAI_URL,
            "api_key": "set" if self.api_key else "not set",
        }


def resolve_settings(
    *,
    profile: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    store: ProfileStore | None = None,
) -> Settings:
    """The settings of this invocation, by the precedence of the module's table."""
    env = os.environ if env is None else env
    store = store or ProfileStore.default(env)
    chosen = profile or env.get("FTCLI_PROFILE")
    named = _named_profile(chosen, store) if chosen else store.current()
    if named is not None:
        settings, key_source = _from_profile(named, env), "profile"
    else:
        from_env = _from_env(env)
        settings, key_source = from_env or Settings(), "environment"
    # The URL the key was given for: the one its profile or the environment names beside it
    key_named_for = _target(settings)
    if base_url:
        settings = Settings(kind="compatible", base_url=base_url, api_key=settings.api_key, profile=settings.profile)
    if api_key:
        return dataclasses.replace(settings, api_key=api_key)
    target = _target(settings)
    if is_loopback_url(target):
        named_here = settings.api_key is not None and _same_url(key_named_for, target)
        own_server = key_for(target, env)  # the key of the user's own `ftcli serve` on that port
        if key_source == "profile" and named_here:
            key = settings.api_key
        elif own_server:
            key = own_server
        else:
            key = settings.api_key if named_here else None  # never another URL's key to a port anyone can take
        settings = dataclasses.replace(settings, api_key=key, key_withheld=key is None and settings.api_key is not None)
    return settings


def known_keys(env: Mapping[str, str] | None = None, store: ProfileStore | None = None) -> list[str]:
    """Every key ftcli can know of here: the key variables, every profile's key (stored or named by variable), and
    the runtime files' keys. What ftcli prints is redacted of each (data/errors.py)."""
    env = os.environ if env is None else env
    keys = [env.get(name) for name in KEY_VARIABLES]
    try:
        for saved in (store or ProfileStore.default(env)).list():
            keys += [saved.api_key, env.get(saved.api_key_env) if saved.api_key_env else None]
    except (FtcliError, OSError):
        pass  # an unreadable config: the command itself reports it
    keys += published_keys(env)
    return [key for key in dict.fromkeys(keys) if key]


def _named_profile(chosen: str, store: ProfileStore) -> Profile:
    named = store.get(chosen)
    if named is None and chosen == "together":  # `--backend together`: Together with TOGETHER_API_KEY
        named = Profile(name="together", kind="together", api_key_env=TOGETHER_KEY_ENV)
    if named is None:
        raise UsageError(f"no profile named {chosen!r}", hint="see `ftcli profile list`")
    return named


def _target(settings: Settings) -> str:
    return settings.azure_endpoint or settings.base_url or OPENAI_URL


def _same_url(first: str | None, second: str | None) -> bool:
    """The same server and path: scheme, host and port compared as URLs (default ports filled in, case and a
    trailing slash ignored). `localhost` and `127.0.0.1` differ: they may reach different listeners."""
    named = _url_identity(first)
    return named is not None and named == _url_identity(second)


def _url_identity(url: str | None) -> tuple[str, str, int | None, str] | None:
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").rstrip("."), port, parts.path.rstrip("/")


def _from_env(env: Mapping[str, str]) -> Settings | None:
    if env.get("AZURE_OPENAI_ENDPOINT"):
        return Settings(
            kind="azure",
            azure_endpoint=env["AZURE_OPENAI_ENDPOINT"],
            api_key=env.get("AZURE_OPENAI_API_KEY") or env.get("OPENAI_API_KEY"),
            api_version=env.get("OPENAI_API_VERSION", DEFAULT_AZURE_API_VERSION),
        )
    if not any(env.get(k) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL")):
        return None
    base_url = env.get("OPENAI_BASE_URL") or None
    return Settings(
        kind="compatible" if base_url else "openai",
        base_url=base_url,
        api_key=env.get("OPENAI_API_KEY"),
        organization=env.get("OPENAI_ORG_ID"),
        project=env.get("OPENAI_PROJECT_ID"),
    )


def _from_profile(profile: Profile, env: Mapping[str, str]) -> Settings:
    key_env = profile.api_key_env or (TOGETHER_KEY_ENV if profile.kind == "together" else None)
    key = profile.api_key or (env.get(key_env) if key_env else None)
    return Settings(
        kind=profile.kind,
        base_url=profile.base_url or (TOGETHER_URL if profile.kind == "together" else None),
        api_key=key,
        organization=profile.organization,
        project=profile.project,
        azure_endpoint=profile.azure_endpoint,
        api_version=profile.api_version,
        profile=profile.name,
    )
