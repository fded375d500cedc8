"""The one root of ftcli's user-facing errors, with the exit code the CLI uses; and the data core's own errors for
bad input that is not a per-line finding (a missing file, a bad option).

The root lives here, in the lowest layer, so that every layer raises the same kind of error and the CLI's boundary
(cli/app.py) catches one type. Every message passes through `redact`, so an API key never reaches a terminal, a log
or a JSON dump, even when a server echoes part of it back (OpenAI's 401 message does). Redaction is by pattern
(OpenAI's and Together's key formats) and by value: the CLI tells `remember_secrets` every key it knows at the start
of each command (a gateway's `myGateway_…` has no pattern), and each is replaced wherever it appears, raw, JSON- or
URL-escaped.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

EXIT_FAILURE = 1
EXIT_USAGE = 2

# OpenAI's keys (sk-…), Together's (tgp_v1_…, or 64 hex digits in older ones), and any long hex secret
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{3,}|tgp_v\d+_[A-Za-z0-9_\-]{8,}|[A-Fa-f0-9]{32,})")


MIN_SECRET_LENGTH = 6  # shorter values would blank ordinary words; a key that short is no secret anyway
_known_secrets: set[str] = set()


def remember_secrets(*secrets: str | None) -> None:
    """Add keys to those `redact` removes from every text, for the rest of this process (or until `forget_secrets`)."""
    _known_secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)


def forget_secrets() -> None:
    """Drop the remembered keys (each CLI invocation starts afresh; in-process callers run several)."""
    _known_secrets.clear()


def redact(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like an API key, every remembered key, and the given secrets, from `text`."""
    values = _known_secrets.union(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
    for secret in sorted(values, key=len, reverse=True):  # longest first: a key that contains another goes whole
        for form in dict.fromkeys((secret, json.dumps(secret)[1:-1], quote(secret, safe=""))):
            text = text.replace(form, "***")
    return _KEY_LIKE.sub("***", text)


class FtcliError(Exception):
    """A problem the user can act on: a message, an optional hint, and the exit code the CLI uses."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.hint = redact(hint) if hint else None


class DataError(FtcliError):
    """A problem with input data or options (exit 2): the CLI prints it without a traceback."""

    exit_code = EXIT_USAGE


class TokenizerIntegrityError(DataError):
    """A shipped tokenizer file does not match its pinned hash: the install is damaged."""
