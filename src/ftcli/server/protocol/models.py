"""Models (the bases this server offers and the fine-tuned ones it trained)."""

from __future__ import annotations

from typing import Literal

from ftcli.server.protocol.common import Response


class ModelObject(Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class DeletedModel(Response):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ModelList(Response):
    object: Literal["list"] = "list"
    data: list[ModelObject]
