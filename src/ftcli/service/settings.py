"""Connection settings, resolved once into a frozen value.

Precedence, highest first: flags (`--base-url`, `--api-key`); an explicitly chosen profile (`--profile` or
`FTCLI_PROFILE`); the SDK's environment variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`,
`OPENAI_PROJECT_ID`; Azure: `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY`, `OPENAI_API_VERSION`); the current
profile of the config file; OpenAI's defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ftcli.service.errors import UsageError
from ftcli.service.profiles import Profile, ProfileStore

DEFAULT_AZURE_API_VERSION = "2025-04-01-preview"
TOGETHER_URL = "https://api.together.xyz/v1"
TOGETHER_KEY_ENV = "TOGETHER_API_KEY"


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

    @property
    def backend_id(self) -> str:
        """A stable, key-free name for this backend (ledgers and manifests are kept per backend)."""
        where = self.azure_endpoint or self.base_url or "https://api.openai.com/v1"
        return hashlib.sha256(f"{self.kind}|{where}|{self.organization}|{self.project}".encode()).hexdigest()[:16]

    def on_this_machine(self) -> bool:
        """A backend on loopback (`ftcli serve`): cheap to poll, so waits can poll often."""
        from urllib.parse import urlparse

        host = urlparse(self.base_url or "").hostname or ""
        return self.kind == "compatible" and (host in ("localhost", "::1") or host.startswith("127."))

    def describe(self) -> dict[str, str | None]:
        """What the settings point at, safe to show: the key only as present or not."""
        return {
            "profile": self.profile,
            "kind": self.kind,
            "base_url": self.azure_endpoint or self.base_url or "https://api.openai.com/v1",
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
    env = os.environ if env is None else env
    store = store or ProfileStore.default(env)
    chosen = profile or env.get("FTCLI_PROFILE")
    if chosen:
        named = store.get(chosen)
        if named is None and chosen == "together":  # `--backend together`: Together with TOGETHER_API_KEY
            named = Profile(name="together", kind="together", api_key_env=TOGETHER_KEY_ENV)
        if named is None:
            raise UsageError(f"no profile named {chosen!r}", hint="see `ftcli profile list`")
        settings = _from_profile(named, env)
    else:
        from_env = _from_env(env)
        current = store.current() if from_env is None else None
        settings = from_env or (_from_profile(current, env) if current else Settings())
    if base_url:
        settings = Settings(kind="compatible", base_url=base_url, api_key=settings.api_key, profile=settings.profile)
    if api_key:
        settings = dataclasses.replace(settings, api_key=api_key)
    return settings


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
