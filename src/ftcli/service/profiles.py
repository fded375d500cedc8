"""Named connection profiles in a TOML file in the user's config directory, created with 0600 permissions.

    current = "local"
    [profiles.local]
    kind = "compatible"
    base_url = "http://127.0.0.1:8765/v1"

A profile may hold a key (`api_key`) or, better, name the variable to read it from (`api_key_env`).

The current profile outranks the SDK's environment variables (service/settings.py), so a profile becomes current
only when asked (`profile add --use`, `profile use`), never as a side effect of adding the first one, and
`profile use --none` clears it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ftcli.data.atomic import write_atomic
from ftcli.service.errors import UsageError

KINDS = ("openai", "azure", "compatible", "together")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str = "compatible"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    organization: str | None = None
    project: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("FTCLI_CONFIG_DIR"):
        return Path(env["FTCLI_CONFIG_DIR"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ftcli"


class ProfileStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None) -> ProfileStore:
        return cls(config_dir(env) / "config.toml")

    def _load(self) -> dict[str, object]:
        if not self.path.exists():
            return {}
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{self.path} is not valid TOML: {exc}") from None

    def list(self) -> list[Profile]:
        raw = self._load().get("profiles", {})
        if not isinstance(raw, dict):
            raise UsageError(f"{self.path}: [profiles] must be a table")
        return [Profile(name=name, **_fields(values)) for name, values in raw.items() if isinstance(values, dict)]

    def get(self, name: str) -> Profile | None:
        return next((p for p in self.list() if p.name == name), None)

    def current_name(self) -> str | None:
        value = self._load().get("current")
        return value if isinstance(value, str) else None

    def current(self) -> Profile | None:
        name = self.current_name()
        return self.get(name) if name else None

    def add(self, profile: Profile, *, make_current: bool = False) -> None:
        if profile.kind not in KINDS:
            raise UsageError(f"kind must be one of {', '.join(KINDS)}, not {profile.kind!r}")
        data = self._load()
        profiles = dict(data.get("profiles", {}))  # type: ignore[call-overload]
        profiles[profile.name] = {k: v for k, v in asdict(profile).items() if k != "name" and v is not None}
        data["profiles"] = profiles
        if make_current:
            data["current"] = profile.name
        self._save(data)

    def use(self, name: str) -> None:
        if self.get(name) is None:
            raise UsageError(f"no profile named {name!r}", hint="see `ftcli profile list`")
        data = self._load()
        data["current"] = name
        self._save(data)

    def clear_current(self) -> None:
        """No current profile: commands go where the flags and the environment say."""
        data = self._load()
        if data.pop("current", None) is not None:
            self._save(data)

    def remove(self, name: str) -> None:
        data = self._load()
        profiles = dict(data.get("profiles", {}))  # type: ignore[call-overload]
        if name not in profiles:
            raise UsageError(f"no profile named {name!r}")
        del profiles[name]
        data["profiles"] = profiles
        if data.get("current") == name:
            data.pop("current")
        self._save(data)

    def _save(self, data: dict[str, object]) -> None:
        import tomli_w

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, tomli_w.dumps(data).encode("utf-8"), private=True)  # it may hold keys: owner only


def _fields(values: dict[str, object]) -> dict[str, str]:
    allowed = set(Profile.__dataclass_fields__) - {"name"}
    return {k: str(v) for k, v in values.items() if k in allowed}
