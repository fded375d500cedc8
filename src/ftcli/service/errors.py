"""User-facing errors of the service layer (under the one root, data/errors.FtcliError), and the one place `openai`
exceptions become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ftcli.data.errors import EXIT_FAILURE, EXIT_USAGE, FtcliError, redact

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "FtcliError", "redact"]  # the root, re-exported for the service's users


class UsageError(FtcliError):
    """Bad options or settings (exit 2)."""

    exit_code = EXIT_USAGE


class AuthError(FtcliError):
    """401: the key is missing or wrong."""


class PermissionDenied(FtcliError):
    """403: the key may not do this (OpenAI no longer lets some organisations fine-tune)."""


class NotFound(FtcliError):
    """404: no such file, job or model on this backend."""


class RateLimited(FtcliError):
    """429, with the wait the server asked for when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class BackendError(FtcliError):
    """5xx, a dropped connection or a timeout: the backend, not the request, failed."""


class CheckFailed(FtcliError):
    """The training file has errors; `ftcli check FILE` lists them."""


class StreamInterrupted(FtcliError):
    """A streamed answer stopped before its end; `partial` holds what arrived."""

    def __init__(self, message: str, *, partial: str) -> None:
        super().__init__(message, hint="the text received so far was kept")
        self.partial = partial


@contextmanager
def translated() -> Iterator[None]:
    """Around calls through the `openai` SDK: an exception of the SDK leaves as ftcli's (`translate`), without the
    SDK's traceback; any other passes unchanged."""
    import openai

    try:
        yield
    except openai.OpenAIError as exc:
        raise translate(exc) from None


def translate(exc: BaseException) -> FtcliError:
    """Map an `openai` exception to an FtcliError by type (as the SDK's `_make_status_error` maps statuses)."""
    import openai

    detail = _detail(exc)
    if isinstance(exc, openai.AuthenticationError):
        return AuthError(
            f"the backend rejected the API key (401): {detail}",
            hint="set OPENAI_API_KEY, pass --profile, or run `ftcli profile add`",
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return PermissionDenied(
            f"not allowed (403): {detail}",
            hint="this organisation may no longer fine-tune on OpenAI; try `--profile local`",
        )
    if isinstance(exc, openai.NotFoundError):
        return NotFound(f"not found (404): {detail}")
    if isinstance(exc, openai.RateLimitError):
        retry_after = _retry_after(exc)
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return RateLimited(f"rate limited (429){wait}: {detail}", retry_after=retry_after)
    if isinstance(exc, openai.APITimeoutError):
        return BackendError("the backend did not answer in time", hint="retry, or raise --timeout")
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(f"cannot reach the backend: {detail}", hint="check --base-url and the network")
    if isinstance(exc, openai.InternalServerError):
        return BackendError(f"the backend failed ({exc.status_code}): {detail}", hint="retry later")
    if isinstance(exc, openai.APIStatusError):
        return FtcliError(f"request refused ({exc.status_code}): {detail}")
    if isinstance(exc, openai.OpenAIError):
        return FtcliError(detail)
    return FtcliError(str(exc))


def _detail(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    message = getattr(exc, "message", None)
    return str(message if isinstance(message, str) else exc)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
