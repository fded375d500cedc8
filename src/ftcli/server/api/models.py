"""Models: the bases this server offers and the fine-tuned models it trained (deleting one removes its adapter)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ftcli.data.local_bases import canonical_name
from ftcli.server.api.errors import not_found
from ftcli.server.bases import bundled_bases, served_adapter, served_folders
from ftcli.server.protocol.models import DeletedModel, ModelList, ModelObject
from ftcli.server.store import Store

router = APIRouter()


@router.get("/models")
def list_models(request: Request) -> ModelList:
    store: Store = request.app.state.store
    data = [ModelObject(id=name, created=0, owned_by="ftcli") for name in bundled_bases()]
    data += [ModelObject(id=r["id"], created=r["created"], owned_by="local") for r in store.models()]
    data += [ModelObject(id=name, created=0, owned_by="local") for name in served_folders() if served_adapter(name)]
    return ModelList(data=data)


@router.get("/models/{model_id:path}")
def retrieve_model(request: Request, model_id: str) -> ModelObject:
    store: Store = request.app.state.store
    if canonical_name(model_id) in bundled_bases():
        return ModelObject(id=canonical_name(model_id), created=0, owned_by="ftcli")
    if served_adapter(model_id) is not None:
        return ModelObject(id=model_id, created=0, owned_by="local")
    row = store.model(model_id)
    if row is None:
        raise not_found("model", model_id)
    return ModelObject(id=row["id"], created=row["created"], owned_by="local")


@router.delete("/models/{model_id:path}")
def delete_model(request: Request, model_id: str) -> DeletedModel:
    store: Store = request.app.state.store
    adapter = store.delete_model(model_id)  # its adapter's files go too
    if adapter is None:
        raise not_found("model", model_id)
    request.app.state.models.forget(adapter)  # no longer answered from memory either
    return DeletedModel(id=model_id)
