"""The fine-tuning services ftcli drives, behind one interface (`base.Backend`): OpenAI's protocol (OpenAI, Azure,
`ftcli serve`, any compatible server) and Together's. `open_backend` picks one for resolved settings; cli/ talks to
what it returns and never asks which."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openai import OpenAI

    from ftcli.service.backends.base import Backend
    from ftcli.service.settings import Settings


def open_backend(settings: Settings, client: OpenAI) -> Backend:
    """The backend for `settings`, over `client` (the `openai` client made for them: for Together, pointed at its
    API, whose fine-tuning routes it calls by path)."""
    if settings.kind == "together":
        from ftcli.service.backends.together import TogetherBackend

        return TogetherBackend(client)
    from ftcli.service.backends.openai_protocol import OpenAIBackend

    return OpenAIBackend(client, kind=settings.kind)
